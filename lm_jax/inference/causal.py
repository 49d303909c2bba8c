"""Decoding with a key/value cache: what `lm_jax.load` returns for a GPT.

  model = lm_jax.load("runs/gpt-tiny")        # a CausalLM
  model.generate(["Emma was"], max_new_tokens=20)                 # greedy
  model.generate(["Emma was"], temperature=0.8, top_p=0.9, seed=1)  # sampled
  model.logits(["Emma was rich."])            # [batch, length, vocab]

A text prompt is scored as training saw a document: `[SEP] text` from
position 0 ([SEP] begins every document, data/causal.py). Prompts of
different lengths are left-padded into one batch: padding is a segment of
its own, so no prompt attends to it, and positions count from each
prompt's first token. The prompt fills the cache in one call; each new
token then costs one call on one position. A row stops at [SEP] (the end
of a document).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax import config as config_lib
from lm_jax.errors import UserError


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


def next_tokens(logits, key, temperature, top_k, top_p):
  """Greedy at temperature 0, else a sample from the filtered, tempered softmax."""
  if temperature == 0:
    return logits.argmax(-1).astype(jnp.int32)
  logits = filter_logits(logits / temperature, top_k, top_p)
  return jax.random.categorical(key, logits).astype(jnp.int32)


class CausalLM:
  """A GPT with its tokenizer: logits and generation. Inputs are texts or id lists."""

  def __init__(self, config, model_state, params, tokenizer, step=None):
    self.config = config
    self.tokenizer = tokenizer
    self.step = step
    self._ms, self.params = model_state, params
    model = model_state.model
    self._forward = jax.jit(lambda p, ids, segments: model(p)(ids, segments))

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

  def token_ids(self, inputs):
    """Texts become `[SEP] text` (a document's start); id lists are taken as they are."""
    if not inputs:
      raise UserError("No input was given; pass a list of texts or of token-id lists.")
    if isinstance(inputs[0], str):
      return [[self.tokenizer.sep_id, *ids] for ids in self.tokenizer.encode(inputs)]
    return [list(x) for x in inputs]

  def encode(self, inputs):
    """Right-padded numpy (input_ids, segment_ids: 1 on tokens, 0 on padding)."""
    rows = self.token_ids(inputs)
    self._check_length(max(len(x) for x in rows))
    ids = np.full((len(rows), max(len(x) for x in rows)), self.tokenizer.pad_id, np.int32)
    segments = np.zeros_like(ids)
    for i, x in enumerate(rows):
      ids[i, :len(x)], segments[i, :len(x)] = x, 1
    return ids, segments

  def _check_length(self, n):
    if n > self.max_len:
      raise UserError(f"That needs {n} positions but the model has {self.max_len}; "
                      "shorten the prompt or ask for fewer new tokens.")

  def __call__(self, inputs):
    """All outputs of the model (numpy), for a batch of texts or id lists."""
    return self.forward(*self.encode(inputs))

  def forward(self, input_ids, segment_ids):
    """logits [b, t, vocab] and hidden_states (numpy) for an encoded batch."""
    return jax.tree.map(np.asarray, self._forward(self.params, input_ids, segment_ids))

  def logits(self, inputs):
    """[batch, length, vocab] next-token logits (float32) of texts or id lists."""
    return self(inputs)["logits"]

  def hidden_states(self, inputs):
    """[batch, length, hidden] last-layer hidden states."""
    return self(inputs)["hidden_states"]

  def generate(self, prompts, max_new_tokens=32, temperature=0.0, top_k=0, top_p=1.0, seed=0):
    """Continues each prompt; returns the new text (for text prompts, to be
    appended to the prompt as it is) or the new ids.

    temperature 0 is greedy; otherwise tokens are sampled from the top_k
    (0 = all) tokens within the top_p probability mass. Sampling is a
    function of `seed` alone.
    """
    if max_new_tokens < 1 or temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
      raise UserError(f"max_new_tokens={max_new_tokens}, temperature={temperature}, top_k={top_k}, "
                      f"top_p={top_p}: use max_new_tokens >= 1, temperature >= 0 (0 = greedy), "
                      "top_k >= 0 (0 = off) and 0 < top_p <= 1.")
    rows = self.token_ids(prompts)
    if min(len(x) for x in rows) == 0:
      raise UserError("A prompt has no tokens; give at least one token per prompt.")
    longest = max(len(x) for x in rows)
    self._check_length(longest + max_new_tokens)
    # Left padding: row b's tokens occupy the last len(b) slots of the prompt.
    pads = np.array([longest - len(x) for x in rows], np.int32)
    ids = np.full((len(rows), longest), self.tokenizer.pad_id, np.int32)
    segments = np.zeros_like(ids)
    for i, x in enumerate(rows):
      ids[i, pads[i]:], segments[i, pads[i]:] = x, 1
    positions = np.maximum(np.arange(longest)[None] - pads[:, None], 0).astype(np.int32)

    choose = functools.partial(self._choose, temperature=float(temperature), top_k=int(top_k),
                               top_p=float(top_p))
    key = jax.random.key(seed)
    logits, cache = self._prefill(self.params, ids, segments, positions,
                                  max_len=longest + max_new_tokens)
    lengths = longest - pads
    new, done = [], np.zeros(len(rows), bool)
    for t in range(max_new_tokens):
      tokens = choose(logits, jax.random.fold_in(key, t))
      new.append(np.asarray(tokens))
      done |= new[-1] == self.tokenizer.sep_id
      if done.all() or t == max_new_tokens - 1:
        break
      logits, cache = self._step(self.params, tokens, jnp.asarray(lengths + t), cache)
    out = []
    for row in np.stack(new, axis=1).tolist():
      if self.tokenizer.sep_id in row:
        row = row[:row.index(self.tokenizer.sep_id)]
      out.append(row)
    if isinstance(prompts[0], str):
      return [self._continuation(prompt[1:], row) for prompt, row in zip(rows, out)]
    return out

  def _continuation(self, prompt_ids, new_ids):
    """The text `new_ids` add to the prompt's, with the space between them."""
    before, after = self.tokenizer.decode(prompt_ids), self.tokenizer.decode(prompt_ids + new_ids)
    return after[len(before):] if after.startswith(before) else self.tokenizer.decode(new_ids)
