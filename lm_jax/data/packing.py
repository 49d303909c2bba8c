"""Tokenised corpus and BERT sentence-pair packing, by random access.

The corpus is tokenised once into flat arrays (tokens, sentence and document
boundaries). It is then cut into *blocks*: runs of consecutive sentences of
one document, about `seq_len - 3` tokens long (BERT's greedy filling). An
example is one block turned into `[CLS] A [SEP] B [SEP]`:

- A is the block's first sentences, up to a random sentence boundary;
- B is, with probability 1/2, the rest of the block (IsNext, label 0), or
  else text from a random other document (NotNext, label 1).

Everything about example i comes from a generator seeded by (seed, i).
"""
import dataclasses
import re

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")


def split_sentences(doc):
  return [s for s in _SENTENCE_END.split(doc) if s.strip()]


@dataclasses.dataclass
class TokenizedCorpus:
  tokens: np.ndarray        # int32 [num_tokens]: all sentences, concatenated
  sentence_start: np.ndarray  # int64 [num_sentences + 1]: offsets into tokens
  doc_start: np.ndarray     # int64 [num_docs + 1]: offsets into sentences

  @property
  def num_docs(self):
    return len(self.doc_start) - 1

  def sentence(self, s):
    return self.tokens[self.sentence_start[s]:self.sentence_start[s + 1]]

  def span(self, first, last):
    """Tokens of sentences [first, last)."""
    return self.tokens[self.sentence_start[first]:self.sentence_start[last]]


def tokenize_corpus(documents, tokenizer):
  sentences, doc_start = [], [0]
  for doc in documents:
    sentences.extend(split_sentences(doc))
    doc_start.append(len(sentences))
  ids = tokenizer.encode(sentences)
  lengths = np.array([len(x) for x in ids], np.int64)
  tokens = np.fromiter((t for x in ids for t in x), np.int32, count=int(lengths.sum()))
  return TokenizedCorpus(tokens, np.concatenate([[0], np.cumsum(lengths)]),
                         np.array(doc_start, np.int64))


def make_blocks(corpus, target_len):
  """[num_blocks, 3] int64 rows (doc, first sentence, end sentence)."""
  blocks = []
  lengths = np.diff(corpus.sentence_start)
  for d in range(corpus.num_docs):
    first, end = corpus.doc_start[d], corpus.doc_start[d + 1]
    start, total = first, 0
    for s in range(first, end):
      total += lengths[s]
      if total >= target_len or s == end - 1:
        if total > 1:
          blocks.append((d, start, s + 1))
        start, total = s + 1, 0
  return np.array(blocks, np.int64).reshape(-1, 3)


def sentence_pair(corpus, block, rng, max_tokens, nsp_prob=0.5):
  """(tokens A, tokens B, label) from a block; label 1 = B is random text."""
  d, first, end = (int(x) for x in block)
  if end - first > 1:
    a_end = int(rng.integers(first + 1, end))
    a, rest = corpus.span(first, a_end), corpus.span(a_end, end)
  else:  # one long sentence: split it at a random token
    whole = corpus.span(first, end)
    cut = int(rng.integers(1, len(whole)))
    a, rest = whole[:cut], whole[cut:]
  label = 0
  if corpus.num_docs > 1 and rng.random() < nsp_prob:
    label = 1
    other = int(rng.integers(0, corpus.num_docs - 1))
    other += other >= d  # any document but this one
    s0, s1 = corpus.doc_start[other], corpus.doc_start[other + 1]
    start = int(rng.integers(s0, s1))
    b_len = max(1, max_tokens - len(a))
    b = corpus.tokens[corpus.sentence_start[start]:corpus.sentence_start[s1]][:b_len]
  else:
    b = rest
  a, b = _truncate_pair(a, b, max_tokens, rng)
  return a, b, label


def _truncate_pair(a, b, max_tokens, rng):
  """Trims the longer side, from a random end, until the pair fits (as BERT)."""
  a, b = list(a), list(b)
  while len(a) + len(b) > max_tokens:
    longer = a if len(a) > len(b) else b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()
  return np.array(a, np.int32), np.array(b, np.int32)


def format_pair(a, b, tokenizer, seq_len):
  """`[CLS] A [SEP] B [SEP]` padded to seq_len: (input_ids, token_type_ids, attention_mask)."""
  ids = np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id], b, [tokenizer.sep_id]])
  types = np.concatenate([np.zeros(len(a) + 2), np.ones(len(b) + 1)])
  pad = seq_len - len(ids)
  return (np.pad(ids, (0, pad), constant_values=tokenizer.pad_id).astype(np.int32),
          np.pad(types, (0, pad)).astype(np.int32),
          np.pad(np.ones(len(ids)), (0, pad)).astype(np.int32))


# ---------------------------------------------------------------------------
# RoBERTa's FULL-SENTENCES packing
# ---------------------------------------------------------------------------

def make_full_sentence_blocks(corpus, target_len):
  """[num_blocks, 2] int64 rows (first sentence, end sentence): runs of
  consecutive sentences of up to `target_len` tokens that cross document
  boundaries, counting one separator token before each document start
  inside a block. A sentence longer than `target_len` is a block alone
  (cut in `full_sentences`)."""
  lengths = np.diff(corpus.sentence_start)
  doc_start = np.zeros(len(lengths), bool)
  doc_start[corpus.doc_start[:-1][corpus.doc_start[:-1] < len(lengths)]] = True
  blocks, start, total = [], 0, 0
  for s in range(len(lengths)):
    cost = lengths[s] + (1 if doc_start[s] and s > start else 0)
    if s > start and total + cost > target_len:
      blocks.append((start, s))
      start, cost = s, lengths[s]
      total = 0
    total += cost
  if len(lengths) > start:
    blocks.append((start, len(lengths)))
  return np.array(blocks, np.int64).reshape(-1, 2)


def full_sentences(corpus, block, sep_id, max_tokens):
  """The block's tokens, with `sep_id` between documents, cut to `max_tokens`."""
  first, end = (int(x) for x in block)
  inner = corpus.doc_start[np.searchsorted(corpus.doc_start, first, "right"):
                           np.searchsorted(corpus.doc_start, end, "left")]
  pieces, s = [], first
  for d in np.unique(inner):
    pieces += [corpus.span(s, int(d)), np.array([sep_id], np.int32)]
    s = int(d)
  pieces.append(corpus.span(s, end))
  return np.concatenate(pieces)[:max_tokens].astype(np.int32)


def format_single(tokens, tokenizer, seq_len):
  """`[CLS] tokens [SEP]` padded to seq_len: (input_ids, token_type_ids (0), attention_mask)."""
  ids = np.concatenate([[tokenizer.cls_id], tokens, [tokenizer.sep_id]])
  pad = seq_len - len(ids)
  return (np.pad(ids, (0, pad), constant_values=tokenizer.pad_id).astype(np.int32),
          np.zeros(seq_len, np.int32),
          np.pad(np.ones(len(ids)), (0, pad)).astype(np.int32))
