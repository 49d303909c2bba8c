"""Packing tokenized documents into the encoders' example blocks, and formatting them.

A level-1 document is (sentence lengths, token ids). Preparation cuts each
shard's documents into blocks, one record each:

- sentence blocks (BERT, ALBERT): runs of consecutive sentences of one
  document, about `seq_len - 3` tokens long (BERT's greedy filling); a
  record holds the document's id (shard, index), the sentences' lengths and
  their tokens;
- full-sentence blocks (RoBERTa, ELECTRA): consecutive sentences filling
  `seq_len - 2` tokens across document boundaries, a [SEP] between
  documents; a record holds the tokens.

At training, `split_block` cuts a sentence block into A and the rest, and
`format_pair` / `format_single` add the special tokens and padding.
"""
import re

import numpy as np

from lm_jax.data import prepared

_SENTENCE_END = re.compile(r"([.!?])\s+")


def split_sentences(doc):
  """The sentences of a text: cut after . ! ? and whitespace, and at line ends."""
  # One C-level substitution, then str.split: twice as fast as re.split (preparation
  # runs this over the whole corpus).
  return [s for s in _SENTENCE_END.sub("\\1\n", doc).split("\n") if s.strip()]


def _offsets(lengths):
  return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


# ---------------------------------------------------------------------------
# Preparation: documents -> blocks
# ---------------------------------------------------------------------------

def sentence_blocks(documents, shard, seq_len, tokenizer):
  """Records of BERT's blocks: sentences of one document, until `seq_len - 3` tokens."""
  del tokenizer  # the blocks hold no special token
  target = seq_len - 3
  for j, (lengths, tokens) in enumerate(documents):
    offsets, start, total = _offsets(lengths), 0, 0
    for s, n in enumerate(lengths.tolist()):
      total += n
      if total >= target or s == len(lengths) - 1:
        if total > 1:
          yield prepared.encode_ints([shard, j], lengths[start:s + 1],
                                     tokens[offsets[start]:offsets[s + 1]])
        start, total = s + 1, 0


def decode_sentence_block(record):
  """(document id [2], sentence lengths, tokens) of a sentence block."""
  return prepared.decode_ints(record)


def full_sentence_blocks(documents, shard, seq_len, tokenizer):
  """Records of RoBERTa's FULL-SENTENCES blocks: consecutive sentences of up to
  `seq_len - 2` tokens that cross document boundaries, counting the [SEP] put
  before each document that starts inside a block. A sentence longer than the
  block is cut."""
  del shard
  target, sep = seq_len - 2, np.array([tokenizer.sep_id], np.int32)
  pieces, total = [], 0
  for lengths, tokens in documents:
    offsets = _offsets(lengths)
    for s, n in enumerate(lengths.tolist()):
      cost = n + (1 if s == 0 and pieces else 0)
      if pieces and total + cost > target:
        yield prepared.encode_ints(np.concatenate(pieces)[:target])
        pieces, total, cost = [], 0, n
      if cost > n:
        pieces.append(sep)
      pieces.append(tokens[offsets[s]:offsets[s + 1]])
      total += cost
  if pieces:
    yield prepared.encode_ints(np.concatenate(pieces)[:target])


# ---------------------------------------------------------------------------
# Training: a block -> an input
# ---------------------------------------------------------------------------

def split_block(lengths, tokens, rng):
  """(A, rest): the block's first sentences up to a random sentence boundary, and the
  others; a block of one sentence is cut at a random token."""
  if len(lengths) > 1:
    cut = int(_offsets(lengths)[rng.integers(1, len(lengths))])
  else:
    cut = int(rng.integers(1, len(tokens)))
  return tokens[:cut], tokens[cut:]


def truncate_pair(a, b, max_tokens, rng):
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


def format_single(tokens, tokenizer, seq_len):
  """`[CLS] tokens [SEP]` padded to seq_len: (input_ids, token_type_ids (0), attention_mask)."""
  ids = np.concatenate([[tokenizer.cls_id], tokens, [tokenizer.sep_id]])
  pad = seq_len - len(ids)
  return (np.pad(ids, (0, pad), constant_values=tokenizer.pad_id).astype(np.int32),
          np.zeros(seq_len, np.int32),
          np.pad(np.ones(len(ids)), (0, pad)).astype(np.int32))
