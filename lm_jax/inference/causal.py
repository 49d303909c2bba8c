"""Decoding with a key/value cache: what `lm_jax.load` returns for a GPT.

  model = lm_jax.load("runs/gpt-tiny")        # a CausalLM
  model.generate("Emma was", max_new_tokens=20)                     # greedy: a str
  model.generate(["Emma was", "He"], temperature=0.8, top_p=0.9, seed=1)  # sampled: a list
  model.logits(["Emma was rich."])            # [batch, length, vocab]

A text prompt is scored as training saw a document: `[SEP] text` from
position 0 ([SEP] begins every document, data/causal.py; GPT-2's
<|endoftext|>). Inputs and batching as in inference/batching.py. In
generation, prompts of different lengths are left-padded into a batch:
padding is a segment of its own, so no prompt attends to it, and positions
count from each prompt's first token. The prompt fills the cache in one
call; each new token then costs one call on one position. A row stops at
[SEP] (the end of a document). Sampling draws each prompt's tokens from
its own key (the seed and the prompt's place in the list), so batching
never changes a sample.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.inference import base, batching


def filter_logits(logits, top_k, top_p):
  """Logits [b, vocab] with all but the top-k tokens, and all beyond the
  smallest set of probability >= top_p (nucleus), set to -inf."""
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability of the tokens ranked above
    threshold = jnp.min(jnp.where(before < top_p, ordered, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return logits


def next_tokens(logits, keys, t, temperature, top_k, top_p):
  """Greedy at temperature 0, else a sample from the filtered, tempered softmax;
  row b draws from keys[b] folded with the step t."""
  if temperature == 0:
    return logits.argmax(-1).astype(jnp.int32)
  logits = filter_logits(logits / temperature, top_k, top_p)
  draw = lambda key, row: jax.random.categorical(jax.random.fold_in(key, t), row)
  return jax.vmap(draw)(keys, logits).astype(jnp.int32)


class CausalLM(base.Loaded):
  """A GPT with its tokenizer: logits and generation (see the module docstring)."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    super().__init__(config, model_state, params, tokenizer, step)
    model = model_state.model
    self._forward = jax.jit(lambda p, ids, segments: model(p)(ids, segments))
    # Only what is returned is computed: hidden states skip the vocabulary projection.
    self._logits = jax.jit(lambda p, ids, segments: model(p)(ids, segments)["logits"])
    self._hidden = jax.jit(
        lambda p, ids, segments: model(p)(ids, segments)["hidden_states"].astype(jnp.float32))

    def prefill(params, ids, segments, positions, max_len):
      net = model(params)
      out = net(ids, segments, positions, cache=net.init_cache(ids.shape[0], max_len))
      return out["logits"][:, -1], out["cache"]

    def step(params, tokens, positions, cache):
      out = model(params)(tokens[:, None], jnp.ones_like(tokens)[:, None], positions[:, None],
                          cache=cache)
      return out["logits"][:, 0], out["cache"]

    self._prefill = jax.jit(prefill, static_argnames="max_len")
    self._step = jax.jit(step, donate_argnums=3)
    self._choose = jax.jit(next_tokens, static_argnames=("temperature", "top_k", "top_p"))

  @property
  def max_len(self):
    return config_lib.size(self.config.model, "max_position_embeddings")

  def _rows(self, inputs, truncation=False, new_tokens=0):
    """(id lists, whether `inputs` was one input, whether they are texts); texts
    become `[SEP] text`. A row that leaves no room for `new_tokens` more is
    refused, or with truncation=True keeps its end (a text also its [SEP])."""
    inputs, single, texts = batching.read(inputs)
    if texts:
      rows = [[self.tokenizer.sep_id, *ids] for ids in self.tokenizer.encode(inputs)]
    else:
      rows = batching.check_ids(inputs, self.config.model.vocab_size, single)
    room = self.max_len - new_tokens
    for i, row in enumerate(rows):
      if len(row) > room:
        if not truncation:
          fewer = ", ask for fewer new tokens" if new_tokens else ""
          raise UserError(f"{batching.name(i, single)} needs {len(row) + new_tokens} positions "
                          f"but the model has {self.max_len}; shorten it{fewer} or pass "
                          "truncation=True to keep its end.")
        head = 1 if texts else 0
        rows[i] = row[:head] + row[len(row) - (room - head):]
    return rows, single, texts

  def token_ids(self, inputs, truncation=False):
    """Texts become `[SEP] text` (a document's start); id lists are taken as they are."""
    return self._rows(inputs, truncation)[0]

  def encode(self, inputs, truncation=False):
    """Right-padded numpy (input_ids, segment_ids: 1 on tokens, 0 on padding)."""
    rows = self.token_ids(inputs, truncation)
    batch = batching.Batch(list(range(len(rows))), rows, self.tokenizer.pad_id, len(rows),
                           max(len(r) for r in rows))
    return batch.ids, batch.mask

  def __call__(self, inputs):
    """All outputs of the model (numpy) for one batch of inputs, padded to the longest."""
    return self.forward(*self.encode(inputs))

  def forward(self, input_ids, segment_ids):
    """logits [b, t, vocab] and hidden_states (numpy) for an encoded batch."""
    return jax.tree.map(np.asarray, self._forward(self.params, input_ids, segment_ids))

  def _per_token(self, inputs, jitted, batch_size, truncation, progress):
    """[n, longest, ...] of a per-token output, zeros on padding ([length, ...] for one input)."""
    rows, single, _ = self._rows(inputs, truncation)
    pieces = [None] * len(rows)
    for batch, out in batching.run(
        batching.batches(rows, self.tokenizer.pad_id, batch_size, self.max_len),
        lambda b: jitted(self.params, b.ids, b.mask), len(rows), batch_size, progress):
      for r, i in enumerate(batch.index):
        pieces[i] = out[r, :len(rows[i])]
    return pieces[0] if single else batching.padded(pieces, [len(r) for r in rows])

  def logits(self, inputs, batch_size=batching.BATCH_SIZE, truncation=False, progress=None):
    """[batch, longest, vocab] next-token logits (float32, zeros on padding);
    [length, vocab] for one input."""
    return self._per_token(inputs, self._logits, batch_size, truncation, progress)

  def hidden_states(self, inputs, batch_size=batching.BATCH_SIZE, truncation=False,
                    progress=None):
    """[batch, longest, hidden] last-layer hidden states (float32, zeros on padding)."""
    return self._per_token(inputs, self._hidden, batch_size, truncation, progress)

  def generate(self, prompts, max_new_tokens=32, temperature=0.0, top_k=0, top_p=1.0, seed=0,
               batch_size=batching.BATCH_SIZE, truncation=False, progress=None):
    """Continues each prompt; returns the new text (for text prompts, to be
    appended to the prompt as it is) or the new ids; one of them for one prompt.

    temperature 0 is greedy; otherwise tokens are sampled from the top_k
    (0 = all) tokens within the top_p probability mass. Sampling is a
    function of `seed` and the prompt's place in the list alone.
    truncation=True keeps the end of a prompt too long for max_new_tokens more.
    """
    if (not isinstance(max_new_tokens, int) or max_new_tokens < 1 or temperature < 0
        or not isinstance(top_k, int) or top_k < 0 or not 0 < top_p <= 1):
      raise UserError(f"max_new_tokens={max_new_tokens}, temperature={temperature}, top_k={top_k}, "
                      f"top_p={top_p}: use max_new_tokens >= 1, temperature >= 0 (0 = greedy), "
                      "top_k >= 0 (0 = off) and 0 < top_p <= 1.")
    if max_new_tokens >= self.max_len:
      raise UserError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the "
                      f"model's {self.max_len} positions; ask for fewer.")
    rows, single, texts = self._rows(prompts, truncation, new_tokens=max_new_tokens)
    choose = functools.partial(self._choose, temperature=float(temperature), top_k=int(top_k),
                               top_p=float(top_p))
    row_keys = jax.random.split(jax.random.key(seed), len(rows))
    new = [None] * len(rows)
    with batching.progress_bar(len(rows), batch_size, progress) as bar:
      for group in batching.groups(rows, batch_size, self.max_len - max_new_tokens):
        out = self._generate([rows[i] for i in group.index], group.rows, group.length,
                             max_new_tokens, row_keys[np.array(group.index)], choose)
        for i, ids in zip(group.index, out):
          new[i] = ids
        bar.update(len(group.index))
    if texts:
      new = [self._continuation(row[1:], ids) for row, ids in zip(rows, new)]
    return new[0] if single else new

  def _generate(self, rows, rows_bucket, length, max_new_tokens, keys, choose):
    """The new ids of one batch of prompts, left-padded to `length`."""
    sep = self.tokenizer.sep_id
    # Left padding: row b's tokens occupy the last len(b) slots; extra rows repeat row 0.
    rows = rows + [rows[0]] * (rows_bucket - len(rows))
    keys = jnp.concatenate([keys, jnp.repeat(keys[:1], rows_bucket - len(keys))])
    pads = np.array([length - len(x) for x in rows], np.int32)
    ids = np.full((rows_bucket, length), self.tokenizer.pad_id, np.int32)
    segments = np.zeros_like(ids)
    for i, x in enumerate(rows):
      ids[i, pads[i]:], segments[i, pads[i]:] = x, 1
    positions = np.maximum(np.arange(length)[None] - pads[:, None], 0).astype(np.int32)
    logits, cache = self._prefill(self.params, ids, segments, positions,
                                  max_len=length + max_new_tokens)
    lengths = length - pads
    new, done = [], np.zeros(rows_bucket, bool)
    for t in range(max_new_tokens):
      tokens = choose(logits, keys, t)
      new.append(np.asarray(tokens))
      done |= new[-1] == sep
      if done.all() or t == max_new_tokens - 1:
        break
      logits, cache = self._step(self.params, tokens, jnp.asarray(lengths + t), cache)
    out = []
    for row in np.stack(new, axis=1).tolist():
      out.append(row[:row.index(sep)] if sep in row else row)
    return out

  def _continuation(self, prompt_ids, new_ids):
    """The text `new_ids` add to the prompt's, with the space between them."""
    before, after = self.tokenizer.decode(prompt_ids), self.tokenizer.decode(prompt_ids + new_ids)
    return after[len(before):] if after.startswith(before) else self.tokenizer.decode(new_ids)
