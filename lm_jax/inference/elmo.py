"""An ELMo run for inference: contextual word vectors.

    elmo = lm_jax.load("runs/elmo_tiny")
    out = elmo.embed(["Emma was handsome.", ["Tokenised", "words", "."]])
    out["layers"]   # [batch, 3, words, 2P]: char encoder, LSTM 1, LSTM 2
    out["mix"]      # [batch, words, 2P]: their scalar mix (default: the mean)
    elmo.embed("Emma was handsome.")["mix"]   # [words, 2P]: one sentence

A str is one sentence (split into words as in training), a list of str many,
a list of token lists is taken as it is. Any number of sentences, batched
as inference/batching.py says (by words, with no length limit).
"""
import jax
import numpy as np

from lm_jax.data import elmo_vocab
from lm_jax.errors import UserError
from lm_jax.inference import base, batching
from lm_jax.models import elmo


class Elmo(base.Loaded):
  """An ELMo run: contextual word vectors from its three layers (AllenNLP's and
  simple_elmo's, computed from zero LSTM states, independent of batching)."""

  def __init__(self, config, model_state, params, vocab, step=None):
    super().__init__(config, model_state, params, vocab, step)

    def embed(p, chars, lengths, weights, gamma):
      layers = model_state.model(p).embed_layers(chars, lengths)
      return layers, elmo.scalar_mix(layers, weights, gamma)
    self._embed = jax.jit(embed)

  def _tokens(self, sentences):
    """(token lists, whether `sentences` was one sentence)."""
    if isinstance(sentences, str):
      sentences = [sentences]
      single = True
    elif isinstance(sentences, (list, tuple)) and sentences:
      single = False
    else:
      raise UserError("embed() takes a sentence (a str) or a non-empty list of sentences (texts "
                      "or token lists).")
    pretokenized = bool(self.config.data.files)
    tokens = []
    for i, s in enumerate(sentences):
      if not isinstance(s, (str, list, tuple)) or not all(isinstance(t, str) for t in s):
        raise UserError(f"Sentence {i} is a {type(s).__name__}; give texts or lists of words.")
      tokens.append(elmo_vocab.split_tokens(s, pretokenized) if isinstance(s, str) else list(s))
      if not tokens[-1]:
        raise UserError(f"Sentence {i} has no words; embed() needs at least one per sentence.")
    return tokens, single

  def encode(self, sentences):
    """Texts (split as in training) or token lists -> character ids
    [batch, 2 + words, max_chars] of `<S> words </S>`, and the lengths."""
    tokens, _ = self._tokens(sentences)
    lengths = np.array([len(t) + 2 for t in tokens], np.int32)
    return self._chars(tokens, lengths.max()), lengths

  def _chars(self, tokens, width):
    chars = np.full((len(tokens), width, self.tokenizer.max_chars), elmo_vocab.PAD_CHAR, np.int32)
    for i, t in enumerate(tokens):
      chars[i, :len(t) + 2] = self.tokenizer.chars([elmo_vocab.BOS, *t, elmo_vocab.EOS])
    return chars

  def embed(self, sentences, weights=None, gamma=1.0, batch_size=batching.BATCH_SIZE,
            progress=None):
    """dict(layers [batch, n_layers + 1, words, 2P], mix [batch, words, 2P], mask
    [batch, words]), without the batch axis for one sentence; `mix` = gamma *
    sum softmax(weights)_k layer_k (AllenNLP's ScalarMix; `weights` default 0:
    the mean). Padding positions are zero."""
    tokens, single = self._tokens(sentences)
    rows = [[0] * (len(t) + 2) for t in tokens]  # lengths with <S> and </S>, for the batching
    num_layers = self.config.model.n_layers + 1
    weights = np.zeros(num_layers, np.float32) if weights is None else np.asarray(weights,
                                                                                   np.float32)
    if weights.shape != (num_layers,):
      raise UserError(f"weights has shape {list(weights.shape)}; give one weight per layer "
                      f"({num_layers}).")
    layers, mixes = [None] * len(rows), [None] * len(rows)

    def call(group):  # rows beyond the sentences repeat the first
      picked = [tokens[i] for i in group.index] + [tokens[group.index[0]]] * (
          group.rows - len(group.index))
      lengths = np.array([len(t) + 2 for t in picked], np.int32)
      return self._embed(self.params, self._chars(picked, group.length), lengths, weights,
                         np.float32(gamma))

    for group, (layer, mix) in batching.run(batching.groups(rows, batch_size), call, len(rows),
                                            batch_size, progress):
      for r, i in enumerate(group.index):
        n = len(tokens[i])
        layers[i], mixes[i] = layer[r, :, 1:n + 1], mix[r, 1:n + 1]  # no <S>, </S>
    words = [len(t) for t in tokens]
    if single:
      return dict(layers=layers[0], mix=mixes[0], mask=np.ones(words[0], bool))
    longest = max(words)
    out_layers = np.zeros((len(rows), num_layers, longest, layers[0].shape[-1]), np.float32)
    for i, x in enumerate(layers):
      out_layers[i, :, :words[i]] = x
    mask = np.arange(longest)[None, :] < np.array(words)[:, None]
    return dict(layers=out_layers, mix=batching.padded(mixes, words, longest), mask=mask)
