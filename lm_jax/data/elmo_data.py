"""ELMo's training examples: windows of a sentence stream, read both ways.

The corpus is one stream of sentences, each `<S> w1 ... wn </S>`, documents
in order. The forward LM reads the stream and predicts each next token. The
backward LM reads the *backward stream*, the same sentences in the same
order but each one reversed (`</S> wn ... w1 <S>`), and predicts its next
token too; as in bilm-tf, both LMs run left to right over their own stream.

With `data.stateful` (bilm-tf's training), batches are stream-major: each
epoch the documents are shuffled by (seed, epoch), the stream is cut into
`batch_size` equal segments, and row r of batch k is window k of segment r,
so it continues row r of batch k-1 and the LSTM state can be carried over
(truncated backpropagation over `data.seq_len` steps). Without it, example i
is a window of the corpus stream in a (seed)-shuffled order. Either way batch
k is a pure function of (seed, k).

Input text: `data.files` are tokenised text, one sentence per line (LTG's
format; a line is a document); other sources are split into sentences and
into words and punctuation.
"""
import functools

import grain
import numpy as np

from lm_jax.data import elmo_vocab, pipeline
from lm_jax.errors import UserError


class ElmoExamples(pipeline.Examples):
  """Forward and backward LM windows: `chars`, `chars_reverse` [seq_len, max_chars]
  and their next-token ids `next_ids`, `next_ids_reverse` [seq_len]."""

  def __init__(self, documents, vocab, data_cfg, seed):
    self.seed = seed
    self.seq_len = data_cfg.seq_len
    self.stateful = data_cfg.stateful
    pretokenized = bool(data_cfg.files)
    types = {elmo_vocab.BOS: 0, elmo_vocab.EOS: 1}  # each distinct token once
    tokens, sentence_start, doc_start = [], [0], [0]
    for doc in documents:
      for sentence in elmo_vocab.tokenized_sentences([doc], pretokenized):
        tokens.append(0)
        tokens.extend(types.setdefault(t, len(types)) for t in sentence)
        tokens.append(1)
        sentence_start.append(len(tokens))
      if len(tokens) > doc_start[-1]:
        doc_start.append(len(tokens))
    self.tokens = np.array(tokens, np.int32)  # type index of every stream position
    self.sentence_start = np.array(sentence_start, np.int64)
    self.doc_start = np.array(doc_start, np.int64)
    names = list(types)
    self.type_chars = vocab.chars(names)
    self.type_ids = vocab.ids(names)
    if len(self.tokens) < 2 * self.seq_len + 2:
      raise UserError(f"The corpus has {len(self.tokens)} tokens, too few for windows of "
                      f"data.seq_len={self.seq_len}; give it more text.")
    self.num_windows = (len(self.tokens) - 1) // self.seq_len
    self.order = grain.MapDataset.range(self.num_windows).shuffle(seed=seed)
    self.rows = None  # stream-major layout: set by the batching calls

  @property
  def num_tokens(self):
    return len(self.tokens)

  def global_batch(self, step, batch_size):
    self.rows = batch_size
    return super().global_batch(step, batch_size)

  def batches(self, batch_size, *args, **kwargs):
    self.rows = batch_size
    return super().batches(batch_size, *args, **kwargs)

  @functools.lru_cache(maxsize=4)
  def _epoch(self, epoch):
    """(document order, stream offset of each) of one stateful epoch."""
    order = np.random.default_rng((self.seed, epoch)).permutation(len(self.doc_start) - 1)
    lengths = np.diff(self.doc_start)[order]
    return order, np.concatenate([[0], np.cumsum(lengths)])

  def _windows_per_epoch(self, rows):
    windows = (len(self.tokens) // rows - 1) // self.seq_len
    if windows < 1:
      raise UserError(f"The corpus ({len(self.tokens)} tokens) is too small for {rows} streams of "
                      f"data.seq_len={self.seq_len}; lower train.batch_size or give it more text.")
    return windows

  def _positions(self, i):
    """Corpus positions of example i's seq_len + 1 tokens (inputs, then the last target)."""
    steps = np.arange(self.seq_len + 1)
    if not self.stateful:
      return self.order[i] * self.seq_len + steps  # grain reshuffles every epoch
    if self.rows is None:
      raise ValueError("stateful ElmoExamples are read through global_batch or batches")
    step, row = divmod(i, self.rows)
    windows = self._windows_per_epoch(self.rows)
    epoch, w = divmod(step, windows)
    order, offsets = self._epoch(epoch)
    stream = row * (len(self.tokens) // self.rows) + w * self.seq_len + steps
    d = np.searchsorted(offsets, stream, side="right") - 1
    return self.doc_start[order[d]] + stream - offsets[d]

  def _mirror(self, positions):
    """The position of the same token in the backward stream (its sentence reversed)."""
    s = np.searchsorted(self.sentence_start, positions, side="right") - 1
    return self.sentence_start[s] + self.sentence_start[s + 1] - 1 - positions

  def example(self, i):
    positions = self._positions(i)
    forward, backward = self.tokens[positions], self.tokens[self._mirror(positions)]
    return dict(chars=self.type_chars[forward[:-1]], next_ids=self.type_ids[forward[1:]],
                chars_reverse=self.type_chars[backward[:-1]],
                next_ids_reverse=self.type_ids[backward[1:]])
