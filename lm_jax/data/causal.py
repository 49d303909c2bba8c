"""Causal-LM examples: documents packed into fixed windows.

The token stream of a prepared shard is `[SEP] doc_1 [SEP] doc_2 [SEP] ...`:
the tokenizer's [SEP] ends each document and doubles as the beginning of
the next (GPT-2's <|endoftext|> plays both roles), so every label is
predictable: the last token of a document predicts [SEP], and a [SEP]
predicts the first token of the next document, seeing nothing before it.
Preparation cuts the stream into windows of `seq_len + 1` tokens
overlapping by one (the shard's last window may be shorter), each a record
with the offsets where a document starts inside it.

Example i is window `order[i]` (shuffled, reshuffled every epoch) as
input_ids = window[:-1], labels = window[1:]. `segment_ids` number the
documents within the window (a document starts at its [SEP]); the model
masks attention across them and restarts positions. A short window is
padded with [PAD] (segment 0, weight 0).
"""
import numpy as np

from lm_jax.data import pipeline, prepared


def windows(documents, shard, seq_len, tokenizer):
  """Records (window tokens, document starts at offsets 1..seq_len-1) of one shard's stream."""
  del shard
  sep = np.array([tokenizer.sep_id], np.int32)
  stream, starts = np.zeros(0, np.int32), []  # the stream not yet cut, its documents' offsets
  for _, tokens in documents:
    starts.append(len(stream))
    stream = np.concatenate([stream, sep, tokens])
    full = (len(stream) - 1) // seq_len  # windows with all seq_len + 1 tokens
    for w in range(full):
      yield _window(stream, starts, w * seq_len, seq_len)
    stream = stream[full * seq_len:]
    starts = [s - full * seq_len for s in starts if s >= full * seq_len]
  if len(stream) >= 2:
    yield _window(stream, starts, 0, seq_len)


def _window(stream, starts, begin, seq_len):
  inside = [s - begin for s in starts if begin < s < begin + seq_len]
  return prepared.encode_ints(stream[begin:begin + seq_len + 1], inside)


class CausalExamples(pipeline.Examples):
  """Packed next-token-prediction windows (see the module docstring)."""

  LAYOUT = "causal_windows"
  pack = staticmethod(windows)

  def examples(self, indices):
    seq_len, out = self.cfg.seq_len, []
    for record in self.read(indices):
      window, starts = prepared.decode_ints(record)
      n = len(window) - 1  # real positions in this window
      marks = np.zeros(n, np.int32)
      marks[starts] = 1
      pad = seq_len - n
      out.append(dict(
          input_ids=np.pad(window[:-1], (0, pad), constant_values=self.tokenizer.pad_id),
          labels=np.pad(window[1:], (0, pad), constant_values=self.tokenizer.pad_id),
          segment_ids=np.pad(1 + np.cumsum(marks), (0, pad)).astype(np.int32),
          weights=np.pad(np.ones(n, np.float32), (0, pad))))
    return out
