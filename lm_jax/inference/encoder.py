"""BERT-family encoders for inference: `MaskedLM` (pre-training runs) and the
shared `Encoder` base of MaskedLM and classifier.Classifier.

    model = lm_jax.load("runs/tiny")
    model.embed(["Some text.", "Another."])         # [2, hidden]: mean-pooled sentence vectors
    model.hidden_states("Some text.")               # [length, hidden]
    model.fill_mask("She was the [MASK] of the two daughters.")
    # [{"score": 0.41, "token": 291, "token_str": "youngest",
    #   "sequence": "She was the youngest of the two daughters."}, ...]
    model.mlm_logits(["She [MASK] the youngest."])  # [1, length, vocab]

Each call computes what it returns and no more: hidden states and
embeddings never run the vocabulary projection, and fill_mask runs it at
the masks only. Texts become `[CLS] text [SEP]`; "[MASK]" in a text is the
tokenizer's mask token (RoBERTa's "<mask>" works too). Any number of
inputs, batched as inference/batching.py says; an input longer than the
model's limit is refused unless truncation=True.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.inference import base, batching

TYPED_MASK = "[MASK]"  # what a text may always write for the tokenizer's own mask token
POOLINGS = ("mean", "cls")


def softmax(logits):
  """Probabilities over the last axis (numpy, max-shifted)."""
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def pool(hidden, mask, pooling):
  """Sentence vectors [b, h] (float32): the [CLS] state, or the mean over the
  tokens (special ones included, as sentence-transformers' mean pooling)."""
  hidden = hidden.astype(jnp.float32)
  if pooling == "cls":
    return hidden[:, 0]
  weights = mask[..., None].astype(jnp.float32)
  return (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


def mask_token(tokenizer):
  """The tokenizer's mask token as written in a text, or None without one."""
  try:
    return tokenizer.id_to_token(tokenizer.mask_id)
  except UserError:
    return None


class Encoder(base.Loaded):
  """A Transformer encoder with its tokenizer (see the module docstring)."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    super().__init__(config, model_state, params, tokenizer, step)
    model = model_state.model
    self._forward = jax.jit(lambda p, ids, types, mask: model(p)(ids, types, mask))
    # Only what is returned is computed: XLA drops the heads these do not use.
    self._hidden = jax.jit(
        lambda p, ids, mask: self._hidden_states(model(p), ids, mask).astype(jnp.float32))
    self._pooled = jax.jit(
        lambda p, ids, mask, pooling: pool(self._hidden_states(model(p), ids, mask), mask, pooling),
        static_argnames="pooling")

  @staticmethod
  def _hidden_states(net, ids, mask):
    """The last layer's hidden states [b, t, hidden] of a model's outputs."""
    return net(ids, jnp.zeros_like(ids), mask)["hidden_states"]

  @property
  def max_length(self):
    """The longest input (in tokens, [CLS] and [SEP] included) the model takes."""
    return config_lib.max_sequence_length(self.config.model)

  def _rows(self, inputs, truncation=False):
    """(id lists, whether `inputs` was one input)."""
    inputs, single, texts = batching.read(inputs)
    tok = self.tokenizer
    if texts:
      own_mask = mask_token(tok)
      if own_mask and own_mask != TYPED_MASK:
        inputs = [text.replace(TYPED_MASK, own_mask) for text in inputs]
      rows = [[tok.cls_id, *ids, tok.sep_id] for ids in tok.encode(inputs)]
      keep_last = tok.sep_id
    else:
      rows, keep_last = batching.check_ids(inputs, self.config.model.vocab_size, single), None
    return batching.fit_length(rows, self.max_length, truncation, keep_last, single), single

  def token_ids(self, inputs, truncation=False):
    """The id lists the model reads: texts as `[CLS] text [SEP]`, id lists as they are."""
    return self._rows(inputs, truncation)[0]

  def encode(self, inputs, truncation=False):
    """numpy input_ids, token_type_ids, attention_mask [batch, longest], right-padded."""
    rows = self.token_ids(inputs, truncation)
    batch = batching.Batch(list(range(len(rows))), rows, self.tokenizer.pad_id, len(rows),
                           max(len(r) for r in rows))
    return batch.ids, np.zeros_like(batch.ids), batch.mask

  def __call__(self, inputs):
    """All outputs of the model (numpy) for one batch of inputs, padded to the longest."""
    return self.forward(*self.encode(inputs))

  def forward(self, input_ids, token_type_ids, attention_mask):
    """All outputs of the model (numpy), for an encoded batch [batch, length]."""
    out = self._forward(self.params, input_ids, token_type_ids, attention_mask)
    return jax.tree.map(np.asarray, out)

  def _map(self, rows, call, batch_size, progress):
    """(batch, host outputs of call(batch)) over `rows` in bucketed batches."""
    return batching.run(batching.batches(rows, self.tokenizer.pad_id, batch_size, self.max_length),
                        call, len(rows), batch_size, progress)

  def _per_token(self, inputs, jitted, batch_size, truncation, progress):
    """[n, longest, ...] of a per-token output, zeros on padding ([length, ...] for one input)."""
    rows, single = self._rows(inputs, truncation)
    pieces = [None] * len(rows)
    for batch, out in self._map(rows, lambda b: jitted(self.params, b.ids, b.mask), batch_size,
                                progress):
      for r, i in enumerate(batch.index):
        pieces[i] = out[r, :len(rows[i])]
    return pieces[0] if single else batching.padded(pieces, [len(r) for r in rows])

  def hidden_states(self, inputs, batch_size=batching.BATCH_SIZE, truncation=False,
                    progress=None):
    """[batch, longest, hidden] last-layer hidden states (float32, zeros on padding);
    [length, hidden] for one text."""
    return self._per_token(inputs, self._hidden, batch_size, truncation, progress)

  def embed(self, inputs, pooling="mean", normalize=False, batch_size=batching.BATCH_SIZE,
            truncation=False, progress=None):
    """Sentence embeddings [batch, hidden] (float32; [hidden] for one text).

    pooling "mean" averages the last layer over each input's tokens, "cls"
    takes its first ([CLS]) token; normalize=True scales each to unit length
    (for cosine similarity by dot product).
    """
    if pooling not in POOLINGS:
      raise UserError(f"pooling={pooling!r} is not one of {POOLINGS}.")
    rows, single = self._rows(inputs, truncation)
    out = None
    for batch, vectors in self._map(rows, lambda b: self._pooled(self.params, b.ids, b.mask,
                                                                 pooling=pooling),
                                    batch_size, progress):
      if out is None:
        out = np.zeros((len(rows), vectors.shape[-1]), np.float32)
      out[batch.index] = vectors[:len(batch.index)]
    if normalize:
      out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out[0] if single else out


class MaskedLM(Encoder):
  """A pre-trained BERT, RoBERTa, ALBERT or ELECTRA (its generator is the masked LM):
  masked-LM logits, fill-mask, hidden states, embeddings."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    super().__init__(config, model_state, params, tokenizer, step)
    model = model_state.model
    self._mlm = jax.jit(lambda p, ids, mask: self._mlm_logits(model(p), ids, mask, None))

    def top(p, ids, mask, positions, k):  # probabilities at `positions` [b, m]: top k
      probs = jax.nn.softmax(self._mlm_logits(model(p), ids, mask, positions), axis=-1)
      return jax.lax.top_k(probs, k)
    self._top = jax.jit(top, static_argnames="k")

  @staticmethod
  def _mlm_logits(net, ids, mask, positions):
    """MLM logits at `positions` [b, m] ([b, m, vocab]), or everywhere when None."""
    types = jnp.zeros_like(ids)
    if hasattr(net, "generator_logits"):  # ELECTRA: the generator is its masked LM
      return net.generator_logits(ids, types, mask, masked_positions=positions)
    return net(ids, types, mask, masked_positions=positions)["mlm_logits"]

  def mlm_logits(self, inputs, batch_size=batching.BATCH_SIZE, truncation=False, progress=None):
    """[batch, longest, vocab] masked-LM logits (float32, zeros on padding);
    [length, vocab] for one text."""
    return self._per_token(inputs, self._mlm, batch_size, truncation, progress)

  def fill_mask(self, inputs, top_k=5, batch_size=batching.BATCH_SIZE, truncation=False):
    """The transformers fill-mask pipeline's answer: for each mask, the `top_k`
    dicts {score, token (id), token_str, sequence (the text with it filled in)},
    best first. As there: a text with one mask gives that list, one with several
    a list of them per mask, and a list of texts a list of those."""
    if not isinstance(top_k, int) or top_k < 1:
      raise UserError(f"top_k={top_k!r}; use an int of at least 1.")
    tok = self.tokenizer
    mask_id = tok.mask_id
    rows, single = self._rows(inputs, truncation)
    masks = [[j for j, t in enumerate(row) if t == mask_id] for row in rows]
    for i, found in enumerate(masks):
      if not found:
        raise UserError(f"{batching.name(i, single)} has no mask token; write {TYPED_MASK}"
                        + (f" (or {mask_token(tok)})" if mask_token(tok) != TYPED_MASK else "")
                        + " where a word is to be filled in.")
    k = min(top_k, self.config.model.vocab_size)

    def call(batch):
      width = batching.row_bucket(max(len(masks[i]) for i in batch.index), 1 << 30)
      positions = np.zeros((batch.ids.shape[0], width), np.int32)
      for r, i in enumerate(batch.index):
        positions[r, :len(masks[i])] = masks[i]
      return self._top(self.params, batch.ids, batch.mask, positions, k=k)

    special = tok.special_ids
    results = [None] * len(rows)
    for batch, (scores, tokens) in self._map(rows, call, batch_size, None):
      for r, i in enumerate(batch.index):
        per_mask = []
        for m, position in enumerate(masks[i]):
          per_mask.append([self._filled(rows[i], position, int(t), float(s), special, mask_id)
                           for s, t in zip(scores[r, m], tokens[r, m])])
        results[i] = per_mask[0] if len(per_mask) == 1 else per_mask
    return results[0] if single else results

  def _filled(self, row, position, token, score, special, mask_id):
    """One fill-mask candidate: `row` with `token` at `position`, decoded without
    the special tokens (other masks stay)."""
    filled = list(row)
    filled[position] = token
    kept = [t for j, t in enumerate(filled) if t not in special or (t == mask_id and j != position)]
    return dict(score=score, token=token, token_str=self.tokenizer.decode([token]),
                sequence=self.tokenizer.decode(kept))
