"""ELMo's training examples: windows of a sentence stream, read both ways.

A prepared shard's documents are one stream of sentences, each
`<S> w1 ... wn </S>`, in order. The forward LM reads the stream and predicts
each next token. The backward LM reads the *backward stream*, the same
sentences in the same order but each one reversed (`</S> wn ... w1 <S>`),
and predicts its next token too; as in bilm-tf, both LMs run left to right
over their own stream. Preparation cuts both streams at the same places
into windows of `seq_len + 1` tokens overlapping by one; a record holds a
window's words both ways. Characters and softmax ids are computed when read
(so a word outside the vocabulary keeps its characters).

Without `data.stateful`, example i is window `order[i]` (shuffled, reshuffled
every epoch). With it (bilm-tf's training), batches are stream-major: the
windows are grouped in chunks of `data.stream_chunk` consecutive windows,
each epoch permutes the chunks by (seed, epoch) (a lazy permutation: no
memory that grows with the corpus), the epoch's stream of windows is cut
into `batch_size` equal segments, and row r of batch k is window k of
segment r. So row r of batch k continues row r of batch k-1 (but where a
chunk ends) and the LSTM state can be carried over (truncated
backpropagation over `data.seq_len` steps). Either way batch k is a pure
function of (seed, k).

Input text: `data.files` are tokenised text, one sentence per line (LTG's
format); other sources are split into sentences and into words and
punctuation (data/elmo_vocab.tokenized_sentences).
"""
import functools

import grain
import numpy as np

from lm_jax.data import elmo_vocab, pipeline
from lm_jax.errors import UserError


def windows(documents, shard, seq_len, tokenizer):
  """Records (forward words, newline, backward words) of one shard's sentence streams."""
  del shard, tokenizer
  forward, backward = [], []
  for sentences in documents:
    for sentence in sentences:
      tokens = [elmo_vocab.BOS, *sentence, elmo_vocab.EOS]
      forward.extend(tokens)
      backward.extend(reversed(tokens))
      while len(forward) > seq_len:
        yield (" ".join(forward[:seq_len + 1]) + "\n" +
               " ".join(backward[:seq_len + 1])).encode("utf-8")
        del forward[:seq_len], backward[:seq_len]


class ElmoExamples(pipeline.Examples):
  """Forward and backward LM windows: `chars`, `chars_reverse` [seq_len, max_chars]
  and their next-token ids `next_ids`, `next_ids_reverse` [seq_len]."""

  LAYOUT = "elmo_windows"
  WORDS = True
  pack = staticmethod(windows)

  def __init__(self, material, vocab, data_cfg, seed):
    super().__init__(material, vocab, data_cfg, seed)
    self.stateful = data_cfg.stateful
    self.chunk = data_cfg.stream_chunk
    self.rows = None  # stream-major layout: set by the batching calls
    self._word_chars = functools.lru_cache(maxsize=1 << 16)(  # frequent words once
        lambda word: elmo_vocab.token_chars(word, vocab.max_chars))

  def global_batch(self, step, batch_size):
    self.rows = batch_size
    return super().global_batch(step, batch_size)

  def batches(self, batch_size, *args, **kwargs):
    self.rows = batch_size
    return super().batches(batch_size, *args, **kwargs)

  @functools.lru_cache(maxsize=4)
  def _chunks(self, rows):
    """(windows per chunk, lazy chunk permutation continuing epoch after epoch) for `rows` streams."""
    n = len(self.records)
    if n < rows:
      raise UserError(f"The corpus has {n} windows of data.seq_len={self.cfg.seq_len}, too few "
                      f"for {rows} streams; lower train.batch_size or give it more text.")
    size = max(1, min(self.chunk, n // rows))
    return size, grain.MapDataset.range(n // size).shuffle(seed=self.seed)

  def windows_per_epoch(self, rows):
    """How many consecutive windows each of `rows` streams reads per epoch."""
    size, order = self._chunks(rows)
    return len(order) * size // rows

  def _window(self, i):
    """The record index of example i."""
    if not self.stateful:
      return int(self.order[i])  # grain reshuffles every epoch
    if self.rows is None:
      raise ValueError("stateful ElmoExamples are read through global_batch or batches")
    size, order = self._chunks(self.rows)
    step, row = divmod(i, self.rows)
    per_row = self.windows_per_epoch(self.rows)
    epoch, k = divmod(step, per_row)
    s = row * per_row + k  # position in this epoch's stream of windows
    return int(order[epoch * len(order) + s // size]) * size + s % size

  def examples(self, indices):
    vocab, out = self.tokenizer, []
    for record in self.records.read([self._window(i) for i in indices]):
      forward, backward = (line.split(" ") for line in record.decode("utf-8").split("\n"))
      out.append(dict(chars=self._chars(forward[:-1]), next_ids=vocab.ids(forward[1:]),
                      chars_reverse=self._chars(backward[:-1]),
                      next_ids_reverse=vocab.ids(backward[1:])))
    return out

  def _chars(self, words):
    return np.stack([self._word_chars(w) for w in words])
