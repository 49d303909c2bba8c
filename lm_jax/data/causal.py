"""Causal-LM examples: documents packed into fixed windows, by random access.

The token stream is `[SEP] doc_1 [SEP] doc_2 [SEP] ... doc_n`: the
tokenizer's [SEP] ends each document and doubles as the beginning of the
next (GPT-2's <|endoftext|> plays both roles), so every label is
predictable: the last token of a document predicts [SEP], and a [SEP]
predicts the first token of the next document, seeing nothing before it.
The stream is cut into windows of `seq_len + 1` tokens overlapping by
one; example i is window `order[i]` (shuffled, reshuffled every epoch) as
input_ids = window[:-1], labels = window[1:]. `segment_ids` number the
documents within the window (a document starts at its [SEP]); the model
masks attention across them and restarts positions. The last window is
padded with [PAD] (segment 0, weight 0).
"""
import grain
import numpy as np

from lm_jax.data import packing, pipeline
from lm_jax.errors import UserError


def document_stream(corpus, separator_id):
  """(tokens, document index of each token): each document preceded by the separator."""
  doc_tokens = corpus.sentence_start[corpus.doc_start]  # token offset of each document
  lengths = np.diff(doc_tokens)
  tokens = np.insert(corpus.tokens, doc_tokens[:-1], separator_id).astype(np.int32)
  return tokens, np.repeat(np.arange(corpus.num_docs), lengths + 1)


class CausalExamples(pipeline.Examples):
  """Packed next-token-prediction windows (see the module docstring)."""

  def __init__(self, documents, tokenizer, data_cfg, seed):
    self.seed = seed
    self.seq_len = data_cfg.seq_len
    self.pad_id = tokenizer.pad_id
    corpus = packing.tokenize_corpus(documents, tokenizer)
    self.tokens, self.doc_of = document_stream(corpus, tokenizer.sep_id)
    self.num_windows = -(-(len(self.tokens) - 1) // self.seq_len)
    if self.num_windows == 0:
      raise UserError("The corpus yields no training example; give it more text.")
    self.order = grain.MapDataset.range(self.num_windows).shuffle(seed=seed)

  @property
  def num_tokens(self):
    return len(self.tokens)

  def example(self, i):
    start = int(self.order[i]) * self.seq_len
    window = self.tokens[start:start + self.seq_len + 1]
    n = len(window) - 1  # real positions in this window
    docs = self.doc_of[start:start + n]
    pad = self.seq_len - n
    return dict(
        input_ids=np.pad(window[:-1], (0, pad), constant_values=self.pad_id),
        labels=np.pad(window[1:], (0, pad), constant_values=self.pad_id),
        segment_ids=np.pad(docs - docs[0] + 1, (0, pad)).astype(np.int32),
        weights=np.pad(np.ones(n, np.float32), (0, pad)))
