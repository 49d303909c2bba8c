"""An ELMo run for inference: contextual word vectors.

    elmo = lm_jax.load("runs/elmo_tiny")
    out = elmo.embed(["Emma was handsome.", ["Tokenised", "words", "."]])
    out["layers"]   # [batch, 3, words, 2P]: char encoder, LSTM 1, LSTM 2
    out["mix"]      # [batch, words, 2P]: their scalar mix (default: the mean)
"""
import jax
import numpy as np

from lm_jax.data import elmo_vocab
from lm_jax.errors import UserError
from lm_jax.models import elmo


class Elmo:
  """An ELMo run: contextual word vectors from its three layers (AllenNLP's and
  simple_elmo's, computed from zero LSTM states, independent of batching)."""

  def __init__(self, config, model_state, params, vocab, step=None):
    self.config = config
    self.tokenizer = vocab
    self.step = step
    self._ms, self.params = model_state, params
    self._layers = jax.jit(lambda p, chars, lengths: model_state.model(p).embed_layers(chars, lengths))

  def encode(self, sentences):
    """Texts (split as in training) or token lists -> character ids
    [batch, 2 + words, max_chars] of `<S> words </S>`, and the lengths."""
    tokens = [elmo_vocab.split_tokens(s, bool(self.config.data.files)) if isinstance(s, str)
              else list(s) for s in sentences]
    if not tokens or not all(tokens):
      raise UserError("embed() needs a non-empty list of non-empty sentences.")
    lengths = np.array([len(t) + 2 for t in tokens], np.int32)
    chars = np.full((len(tokens), lengths.max(), self.tokenizer.max_chars), elmo_vocab.PAD_CHAR,
                    np.int32)
    for i, t in enumerate(tokens):
      chars[i, :lengths[i]] = self.tokenizer.chars([elmo_vocab.BOS, *t, elmo_vocab.EOS])
    return chars, lengths

  def embed(self, sentences, weights=None, gamma=1.0):
    """dict(layers [batch, n_layers + 1, words, 2P], mix [batch, words, 2P], mask
    [batch, words]); `mix` = gamma * sum softmax(weights)_k layer_k (AllenNLP's
    ScalarMix; `weights` default 0: the mean). Padding positions are zero."""
    chars, lengths = self.encode(sentences)
    layers = np.asarray(self._layers(self.params, chars, lengths))[:, :, 1:-1]  # no <S>, </S>
    mask = np.arange(layers.shape[2])[None, :] < (lengths - 2)[:, None]
    layers = layers * mask[:, None, :, None]
    if weights is None:
      weights = np.zeros(layers.shape[1], np.float32)
    mix = np.asarray(elmo.scalar_mix(layers, np.asarray(weights, np.float32), gamma))
    return dict(layers=layers, mix=mix, mask=mask)
