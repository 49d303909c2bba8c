"""What every inference class shares: reading the inputs a user passes, and
running a jitted model over any number of them in a few fixed shapes.

Inputs: a str is one text; a list (or tuple) of str is many; a list of
token-id lists is taken as it is, and a flat list of ints is one such list.
A call with one text (or one id list) returns its result without the batch
axis.

Shapes (the bucketing policy): the inputs are sorted by length, longest
first, and cut into batches of `batch_size` rows. A batch is padded to the
first of the lengths 16, 24, 32, 48, 64, 96, 128, ... (each 1.5x or 1.33x
the one before, so a batch's longest input fills over two thirds of it)
that holds its longest input, capped at the model's limit, and a last,
smaller batch to the next power of two rows. So a model compiles once per
(rows, length) bucket: a few shapes per batch size, and after the first
calls, never again for inputs within those lengths.
"""
import collections

import jax
import numpy as np
from tqdm import auto as tqdm

from lm_jax.errors import UserError

SHORTEST = 16  # the first length bucket
BATCH_SIZE = 32  # inputs per batch unless a call says otherwise
PROGRESS_BATCHES = 8  # show a progress bar (progress=None) from this many batches on


def length_bucket(n, limit=None):
  """The padded length of a batch whose longest input has `n` tokens: the
  first of 16, 24, 32, 48, 64, 96, ... >= n, capped at `limit`."""
  size = SHORTEST
  while size < n:
    size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3  # 2^k -> 1.5 * 2^k -> 2^(k+1)
  return size if limit is None else min(size, limit)


def row_bucket(n, batch_size):
  """The rows of a batch of `n` inputs: the next power of two, at most batch_size."""
  return min(batch_size, 1 << max(n - 1, 0).bit_length())


def read(inputs):
  """(list of inputs, whether `inputs` was a single one, whether they are texts)."""
  if isinstance(inputs, str):
    return [inputs], True, True
  if isinstance(inputs, np.ndarray):
    inputs = inputs.tolist()
  if not isinstance(inputs, (list, tuple)):
    raise UserError(f"Inputs are a text, a list of texts or a list of token-id lists; got "
                    f"{type(inputs).__name__}.")
  if not inputs:
    raise UserError("No input was given; pass a text, a list of texts or a list of token-id "
                    "lists.")
  if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in inputs):
    return [list(inputs)], True, False
  is_text = [isinstance(x, str) for x in inputs]
  if all(is_text):
    return list(inputs), False, True
  if any(is_text):
    i = is_text.index(False)
    raise UserError(f"Input {i} is a {type(inputs[i]).__name__} among texts; pass texts or "
                    "token-id lists, not a mix.")
  for i, x in enumerate(inputs):
    if not isinstance(x, (list, tuple, np.ndarray)):
      raise UserError(f"Input {i} is a {type(x).__name__}; pass texts or lists of token ids.")
  return list(inputs), False, False


def name(i, single):
  """How a sentence names input i: "The input" when the call had one."""
  return "The input" if single else f"Input {i}"


def check_ids(rows, vocab_size, single=False):
  """Refuses id lists with no ids, ids that are not ints, or ids outside the vocabulary."""
  for i, row in enumerate(rows):
    if not len(row):
      raise UserError(f"{name(i, single)} has no tokens; give at least one token id.")
    ids = np.asarray(row)
    if ids.dtype.kind not in "iu":
      raise UserError(f"{name(i, single)} holds {ids.dtype} values, not token ids; pass lists "
                      "of ints.")
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
      raise UserError(f"{name(i, single)} has the token id {int(bad[0])}, outside the "
                      f"vocabulary (0..{vocab_size - 1}).")
  return [[int(x) for x in row] for row in rows]


def fit_length(rows, limit, truncation, keep_last=None, single=False):
  """`rows` cut to `limit` ids with truncation=True, else an over-long one refused.

  `keep_last`: an id to end a cut row with (an encoder's [SEP])."""
  for i, row in enumerate(rows):
    if len(row) <= limit:
      continue
    if not truncation:
      raise UserError(f"{name(i, single)} has {len(row)} tokens but the model takes at most "
                      f"{limit}; shorten or split it, or pass truncation=True to cut it.")
    rows[i] = row[:limit - 1] + [keep_last] if keep_last is not None else row[:limit]
  return rows


# One batch's inputs (`index` into the call's list) and its bucket shape.
Group = collections.namedtuple("Group", "index rows length")


def groups(rows, batch_size, limit=None):
  """The Group of each batch of `rows` (id lists, or anything with a length),
  longest first (see the module docstring)."""
  if not isinstance(batch_size, int) or batch_size < 1:
    raise UserError(f"batch_size={batch_size!r}; use an int of at least 1.")
  order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    yield Group(index, row_bucket(len(index), batch_size),
                length_bucket(len(rows[index[0]]), limit))


class Batch:
  """Inputs `index` (into the call's list) right-padded into one bucket-shaped batch:
  `ids` and `mask` (1 on tokens) [rows bucket, length bucket]."""

  def __init__(self, index, rows, pad_id, rows_bucket, length):
    self.index = index
    self.ids = np.full((rows_bucket, length), pad_id, np.int32)
    self.mask = np.zeros((rows_bucket, length), np.int32)
    for r, i in enumerate(index):
      self.ids[r, :len(rows[i])], self.mask[r, :len(rows[i])] = rows[i], 1
    # Rows beyond the inputs repeat the first: a real row, so no row attends to nothing.
    self.ids[len(index):], self.mask[len(index):] = self.ids[0], self.mask[0]


def batches(rows, pad_id, batch_size, limit=None):
  """The Batches of `rows` (id lists)."""
  for group in groups(rows, batch_size, limit):
    yield Batch(group.index, rows, pad_id, group.rows, group.length)


def progress_bar(count, batch_size, progress=None):
  """A bar counting `count` inputs; progress=None shows it from PROGRESS_BATCHES batches on."""
  show = progress if progress is not None else count > PROGRESS_BATCHES * batch_size
  return tqdm.tqdm(total=count, unit="input", disable=not show, leave=False)


def run(batches_, call, count, batch_size, progress=None):
  """Yields (batch, host outputs of `call(batch)`) for each batch (a Batch or a
  Group) of `count` inputs.

  The next batch is dispatched before the last one's outputs are fetched,
  so the device computes while the host pads and copies.
  """
  pending = None
  with progress_bar(count, batch_size, progress) as bar:
    for batch in batches_:
      out = call(batch)
      if pending is not None:
        yield pending[0], jax.device_get(pending[1])
        bar.update(len(pending[0].index))
      pending = (batch, out)
    if pending is not None:
      yield pending[0], jax.device_get(pending[1])
      bar.update(len(pending[0].index))


def padded(pieces, lengths, width=None):
  """[n, longest, ...] of per-input arrays [length_i, ...], zeros beyond each length."""
  longest = width or max(lengths)
  first = pieces[0]
  out = np.zeros((len(pieces), longest, *first.shape[1:]), first.dtype)
  for i, (x, n) in enumerate(zip(pieces, lengths)):
    out[i, :n] = x[:n]
  return out
