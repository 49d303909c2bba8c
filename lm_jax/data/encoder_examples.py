"""Training examples of the BERT-family encoders (BERT, RoBERTa, ALBERT, ELECTRA).

Each is a pipeline.Examples over a prepared corpus's blocks (data/packing.py):
example i is a pure function of (seed, i), its masks drawn anew per epoch
(dynamic masking) by data/masking.

BERT's next-sentence pairs: A is the block's first sentences up to a random
sentence boundary. With probability data.nsp_probability, B is NotNext
(label 1): the start of another block of the same split, cut to the length
the true continuation (the rest of A's block) would have had, so that
neither B's length nor its position gives the label away. The other block is
the first of four drawn at random that comes from another document and is
long enough (else the longest from another document); the coin and the
draws come from a generator seeded by (seed, i, 2), so they are read with
the batch. Otherwise B is the rest of the block (IsNext, label 0). The pair
is then trimmed to seq_len - 3 tokens as BERT does. A split of one document
has no other block to draw: every pair is IsNext, and a warning says so.
"""
import warnings

import numpy as np

from lm_jax.data import masking, packing, pipeline, prepared

_CANDIDATES = 4  # NotNext: other blocks drawn per example (the first that fits is taken)


class _MaskedExamples(pipeline.Examples):
  """A prepared corpus's blocks in a per-epoch shuffled order, and MLM masking."""

  def __init__(self, material, tokenizer, data_cfg, seed):
    super().__init__(material, tokenizer, data_cfg, seed)
    self.word_starts = tokenizer.word_starts()

  def mask(self, input_ids, rng):
    """dict(input_ids (masked), masked_positions, masked_ids, masked_weights)."""
    cfg, tok = self.cfg, self.tokenizer
    masked, positions, ids, weights = masking.mask_tokens(
        input_ids, rng, vocab_size=tok.vocab_size, mask_id=tok.mask_id,
        special_ids=tok.special_ids, word_starts=self.word_starts,
        mask_prob=cfg.mask_probability, max_predictions=cfg.max_predictions_per_seq,
        whole_word=cfg.whole_word_masking)
    return dict(input_ids=masked, masked_positions=positions, masked_ids=ids,
                masked_weights=weights)


class BertExamples(_MaskedExamples):
  """BERT's inputs: `[CLS] A [SEP] B [SEP]` sentence pairs for next-sentence
  prediction (the module docstring says how B is drawn), masked for MLM."""

  LAYOUT = "sentence_blocks"
  pack = staticmethod(packing.sentence_blocks)

  def __init__(self, material, tokenizer, data_cfg, seed):
    super().__init__(material, tokenizer, data_cfg, seed)
    if data_cfg.nsp_probability > 0 and material.num_documents < 2:
      warnings.warn(f"The {material.split} split of {material.corpus.path} is one document, so "
                    "next-sentence prediction is trivial (no NotNext pair can come from another "
                    "document: every label is IsNext); give text of several documents (separated "
                    "by blank lines), or set data.nsp_probability=0.", stacklevel=2)

  def _candidates(self, coin, own):
    """Random record indices other than `own` (all of them equally likely)."""
    others = coin.integers(0, len(self.records) - 1, _CANDIDATES)
    return [int(o) + (o >= own) for o in others]

  def examples(self, indices):
    cfg, n = self.cfg, len(self.records)
    own = [int(self.order[i]) for i in indices]
    coins = [np.random.default_rng((self.seed, i, 2)) for i in indices]
    drawn = [self._candidates(c, o) if n > 1 and c.random() < cfg.nsp_probability else []
             for c, o in zip(coins, own)]
    records = iter(self.records.read(own + [o for d in drawn for o in d]))
    blocks = [packing.decode_sentence_block(next(records)) for _ in own]
    out = []
    for i, (doc, lengths, tokens), candidates in zip(indices, blocks, drawn):
      rng = np.random.default_rng((self.seed, i))
      a, rest = packing.split_block(lengths, tokens, rng)
      others = [packing.decode_sentence_block(next(records)) for _ in candidates]
      others = [t for d, _, t in others if not np.array_equal(d, doc)]  # other documents only
      b, label = rest, 0
      if others:
        long_enough = [t for t in others if len(t) >= len(rest)]
        b, label = (long_enough or [max(others, key=len)])[0][:len(rest)], 1
      a, b = packing.truncate_pair(a, b, cfg.seq_len - 3, rng)
      input_ids, token_type_ids, attention_mask = packing.format_pair(a, b, self.tokenizer,
                                                                      cfg.seq_len)
      out.append(dict(token_type_ids=token_type_ids, attention_mask=attention_mask,
                      **self.mask(input_ids, rng), nsp_labels=np.int32(label)))
    return out


class FullSentenceExamples(_MaskedExamples):
  """RoBERTa's FULL-SENTENCES inputs for MLM alone: `[CLS] s1 s2 ... [SEP]`,
  consecutive sentences filling seq_len across document boundaries, with a
  [SEP] between documents; one token type."""

  LAYOUT = "full_sentences"
  pack = staticmethod(packing.full_sentence_blocks)

  def examples(self, indices):
    out = []
    for i, record in zip(indices, self.read(indices)):
      rng = np.random.default_rng((self.seed, i))
      (tokens,) = prepared.decode_ints(record)
      input_ids, token_type_ids, attention_mask = packing.format_single(
          tokens, self.tokenizer, self.cfg.seq_len)
      out.append(dict(self.mask(input_ids, rng), token_type_ids=token_type_ids,
                      attention_mask=attention_mask))
    return out


class ReplacedTokenExamples(FullSentenceExamples):
  """ELECTRA: full-sentence MLM inputs plus one uniform number per prediction,
  with which the loss samples the generator's replacement (losses.sample_tokens)."""

  def examples(self, indices):
    return [dict(e, replacement_uniform=np.random.default_rng((self.seed, i, 1)).random(
        self.cfg.max_predictions_per_seq, dtype=np.float32))
            for i, e in zip(indices, super().examples(indices))]


class SentenceOrderExamples(_MaskedExamples):
  """ALBERT's inputs: `[CLS] A [SEP] B [SEP]` with A and B consecutive text of
  one document (BERT's blocks), swapped with probability data.nsp_probability
  (sop_labels 1); masked for MLM."""

  LAYOUT = "sentence_blocks"
  pack = staticmethod(packing.sentence_blocks)

  def examples(self, indices):
    cfg, out = self.cfg, []
    for i, record in zip(indices, self.read(indices)):
      rng = np.random.default_rng((self.seed, i))
      _, lengths, tokens = packing.decode_sentence_block(record)
      a, b = packing.split_block(lengths, tokens, rng)
      a, b = packing.truncate_pair(a, b, cfg.seq_len - 3, rng)
      swapped = rng.random() < cfg.nsp_probability
      if swapped:
        a, b = b, a
      input_ids, token_type_ids, attention_mask = packing.format_pair(a, b, self.tokenizer,
                                                                      cfg.seq_len)
      out.append(dict(self.mask(input_ids, rng), token_type_ids=token_type_ids,
                      attention_mask=attention_mask, sop_labels=np.int32(swapped)))
    return out
