"""`lm_jax.load(DIR)`: a trained model and its tokenizer, for inference.

DIR is a training workdir or a HuggingFace model directory (lm_jax.export's
output, or a BERT saved by transformers' save_pretrained).

    model = lm_jax.load("runs/tiny")
    logits = model.mlm_logits(["She was the [MASK] of the two daughters."])
    model.fill_mask("She was the [MASK] of the two daughters.")
    hidden = model.hidden_states(["Some text.", "Another."])

A fine-tuned run or HF classifier gives a `Classifier`:

    lm_jax.load("runs/sst2").predict(["A delightful film."])   # [("positive", 0.97)]

An ELMo run gives an `ElmoPretrained` instead:

    elmo = lm_jax.load("runs/elmo_tiny")
    out = elmo.embed(["Emma was handsome.", ["Tokenised", "words", "."]])
    out["layers"]   # [batch, 3, words, 2P]: char encoder, LSTM 1, LSTM 2
    out["mix"]      # [batch, words, 2P]: their scalar mix (default: the mean)
"""
import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from lm_jax import checkpoint, config as config_lib, families, interop, parallel
from lm_jax.data import tokenizer as tokenizer_lib
from lm_jax.errors import UserError


def read_config(workdir):
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise UserError(f"{workdir} is not an lm_jax run (no config.json); "
                    "give the --workdir of a training run.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def single_device_mesh(config):
  """A 1-device mesh: inference and export hold the whole model on one device."""
  mesh_cfg = ml_collections.ConfigDict(dict(config.mesh))
  mesh_cfg.update(data=1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1)
  return parallel.make_mesh(mesh_cfg, jax.local_devices()[:1]), parallel.rules(mesh_cfg)


def restore_params(workdir, step=None, mesh=None, rule_table=None):
  """(config, ModelState, params, step) of a run's checkpoint (latest by default),
  restored onto `mesh` with `rule_table` (default: one device)."""
  from lm_jax import train  # pylint: disable=g-import-not-at-top
  config = read_config(workdir)
  if mesh is None:
    mesh, rule_table = single_device_mesh(config)
  ms = train.ModelState(config, mesh, rule_table)
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  steps = ckpt.steps()
  if not steps:
    raise UserError(f"{workdir} has no complete checkpoint yet; train longer or wait for the first save.")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise UserError(f"{workdir} has no checkpoint at step {step}; available steps: {steps}.")
  params, _ = ckpt.restore(step, ms.abstract_params)
  ckpt.close()
  return config, ms, params, step


def softmax(logits):
  """Probabilities over the last axis (numpy, max-shifted)."""
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class Pretrained:
  """A model with its tokenizer. Inputs are a list of texts or of token-id lists."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    self.config = config
    self.tokenizer = tokenizer
    self.step = step
    self._ms, self.params = model_state, params
    self._forward = jax.jit(lambda p, ids, types, mask: model_state.model(p)(ids, types, mask))

  def encode(self, inputs):
    """Texts become `[CLS] text [SEP]`; id lists are taken as they are.

    Returns numpy input_ids, token_type_ids, attention_mask, right-padded.
    """
    tok = self.tokenizer
    if inputs and isinstance(inputs[0], str):
      inputs = [[tok.cls_id, *ids, tok.sep_id] for ids in tok.encode(inputs)]
    longest = max(len(x) for x in inputs)
    limit = config_lib.max_sequence_length(self.config.model)
    if longest > limit:
      raise UserError(f"An input has {longest} tokens but the model takes at most {limit}; "
                      "shorten or split it.")
    ids = np.full((len(inputs), longest), tok.pad_id, np.int32)
    mask = np.zeros_like(ids)
    for i, x in enumerate(inputs):
      ids[i, :len(x)] = x
      mask[i, :len(x)] = 1
    return ids, np.zeros_like(ids), mask

  def __call__(self, inputs):
    """All outputs of the model (numpy), for a batch of texts or id lists."""
    return self.forward(*self.encode(inputs))

  def forward(self, input_ids, token_type_ids, attention_mask):
    """All outputs of the model (numpy), for an encoded batch [batch, length]."""
    out = self._forward(self.params, input_ids, token_type_ids, attention_mask)
    return jax.tree.map(np.asarray, out)

  def mlm_logits(self, inputs):
    """[batch, length, vocab] masked-LM logits (float32)."""
    return self(inputs)["mlm_logits"]

  def hidden_states(self, inputs):
    """[batch, length, hidden] last-layer hidden states."""
    return self(inputs)["hidden_states"]

  def fill_mask(self, text, top_k=5):
    """For each [MASK] in `text`, the `top_k` (token, probability) pairs."""
    ids, _, _ = self.encode([text])
    logits = self.mlm_logits([text])[0]
    result = []
    for pos in np.flatnonzero(ids[0] == self.tokenizer.mask_id):
      probs = softmax(logits[pos])
      top = np.argsort(-probs)[:top_k]
      result.append([(self.tokenizer.id_to_token(i), float(probs[i])) for i in top])
    return result


class Classifier(Pretrained):
  """A fine-tuned model (model.task): `logits` and, for sequence tasks, `predict`."""

  def logits(self, inputs):
    """[batch, labels] (sequence tasks) or [batch, length, labels] (token tasks)."""
    return self(inputs)["logits"]

  def predict(self, texts):
    """Per text: (label, probability) of the most likely class, or the score (regression)."""
    if self.config.model.task != "sequence_classification":
      raise UserError("predict() is for sequence tasks; use logits() for token classification.")
    logits, labels = self.logits(texts), self.config.model.labels
    if len(labels) == 1:
      return [float(x) for x in logits[:, 0]]
    probs = softmax(logits)
    return [(labels[i], float(p[i])) for p, i in zip(probs, probs.argmax(-1))]


def run_tokenizer(config, workdir):
  """A run's tokenizer, or its family's own vocabulary (ELMo's vocab.txt)."""
  directory = os.path.join(workdir, "tokenizer")
  vocab = families.get(config.model).vocab
  return vocab.load(config, directory) if vocab else tokenizer_lib.load(directory)


class ElmoPretrained:
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
    from lm_jax.data import elmo_vocab  # pylint: disable=g-import-not-at-top
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
    from lm_jax.models import elmo  # pylint: disable=g-import-not-at-top
    chars, lengths = self.encode(sentences)
    layers = np.asarray(self._layers(self.params, chars, lengths))[:, :, 1:-1]  # no <S>, </S>
    mask = np.arange(layers.shape[2])[None, :] < (lengths - 2)[:, None]
    layers = layers * mask[:, None, :, None]
    if weights is None:
      weights = np.zeros(layers.shape[1], np.float32)
    mix = np.asarray(elmo.scalar_mix(layers, np.asarray(weights, np.float32), gamma))
    return dict(layers=layers, mix=mix, mask=mask)


def load(path, step=None):
  """Loads an lm_jax run directory (latest checkpoint unless `step` is given)
  or an HF model directory."""
  if interop.is_hf_dir(path):
    return load_hf(path)
  config, ms, params, step = restore_params(path, step)
  tok = run_tokenizer(config, path)
  return inference_class(config.model)(config, ms, params, tok, step)


def inference_class(model_cfg):
  """What `load` returns for the family: Pretrained (encoders) or, for
  decoders, decoding.CausalLM (logits and text generation)."""
  if model_cfg.get("task"):
    return Classifier
  if model_cfg.family == "elmo":
    return ElmoPretrained
  if model_cfg.family == "gpt2":
    from lm_jax import decoding  # pylint: disable=g-import-not-at-top
    return decoding.CausalLM
  return Pretrained


def load_hf(path):
  """An HF model directory: weights, config.json and tokenizer files."""
  from lm_jax import train  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.model = interop.model_config(path)
  tok = tokenizer_lib.load(path)
  mesh, rule_table = single_device_mesh(config)
  ms = train.ModelState(config, mesh, rule_table)
  init = jax.jit(lambda: nnx.to_pure_dict(nnx.state(families.build_model(config.model, rngs=nnx.Rngs(0)))),
                 out_shardings=ms.param_shardings)
  return inference_class(config.model)(config, ms, interop.load_params(path, config.model, init()),
                                       tok)
