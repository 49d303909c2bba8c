"""Training examples of the BERT-family encoders (BERT, RoBERTa, ALBERT, ELECTRA).

Each is a pipeline.Examples: example i is a pure function of (seed, i), its
masks drawn anew per epoch (dynamic masking) by data/masking.
"""
import grain
import numpy as np

from lm_jax.data import packing, pipeline
from lm_jax.errors import UserError
from lm_jax.data import masking


class _MaskedExamples(pipeline.Examples):
  """The corpus, its blocks in a per-epoch shuffled order, and MLM masking."""

  def __init__(self, documents, tokenizer, data_cfg, seed):
    self.tokenizer = tokenizer
    self.cfg = data_cfg
    self.seed = seed
    self.corpus = packing.tokenize_corpus(documents, tokenizer)
    self.blocks = self.make_blocks()
    if len(self.blocks) == 0:
      raise UserError("The corpus yields no training example; give it more text.")
    self.order = grain.MapDataset.range(len(self.blocks)).shuffle(seed=seed)
    self.word_starts = tokenizer.word_starts()

  @property
  def num_tokens(self):
    return len(self.corpus.tokens)

  def make_blocks(self):
    raise NotImplementedError

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
  prediction (packing.sentence_pair), masked for MLM."""

  def make_blocks(self):
    return packing.make_blocks(self.corpus, self.cfg.seq_len - 3)

  def example(self, i):
    rng = np.random.default_rng((self.seed, i))
    cfg = self.cfg
    a, b, label = packing.sentence_pair(self.corpus, self.blocks[self.order[i]], rng,
                                        cfg.seq_len - 3, cfg.nsp_probability)
    input_ids, token_type_ids, attention_mask = packing.format_pair(a, b, self.tokenizer,
                                                                    cfg.seq_len)
    return dict(token_type_ids=token_type_ids, attention_mask=attention_mask,
                **self.mask(input_ids, rng), nsp_labels=np.int32(label))


class FullSentenceExamples(_MaskedExamples):
  """RoBERTa's FULL-SENTENCES inputs for MLM alone: `[CLS] s1 s2 ... [SEP]`,
  consecutive sentences filling seq_len across document boundaries, with a
  [SEP] between documents; one token type."""

  def make_blocks(self):
    return packing.make_full_sentence_blocks(self.corpus, self.cfg.seq_len - 2)

  def example(self, i):
    rng = np.random.default_rng((self.seed, i))
    tokens = packing.full_sentences(self.corpus, self.blocks[self.order[i]],
                                    self.tokenizer.sep_id, self.cfg.seq_len - 2)
    input_ids, token_type_ids, attention_mask = packing.format_single(
        tokens, self.tokenizer, self.cfg.seq_len)
    return dict(self.mask(input_ids, rng), token_type_ids=token_type_ids,
                attention_mask=attention_mask)


class ReplacedTokenExamples(FullSentenceExamples):
  """ELECTRA: full-sentence MLM inputs plus one uniform number per prediction,
  with which the loss samples the generator's replacement (losses.sample_tokens)."""

  def example(self, i):
    out = super().example(i)
    rng = np.random.default_rng((self.seed, i, 1))
    return dict(out, replacement_uniform=rng.random(self.cfg.max_predictions_per_seq,
                                                    dtype=np.float32))


class SentenceOrderExamples(_MaskedExamples):
  """ALBERT's inputs: `[CLS] A [SEP] B [SEP]` with A and B consecutive text of
  one document (BERT's blocks), swapped with probability data.nsp_probability
  (sop_labels 1); masked for MLM."""

  def make_blocks(self):
    return packing.make_blocks(self.corpus, self.cfg.seq_len - 3)

  def example(self, i):
    rng = np.random.default_rng((self.seed, i))
    cfg = self.cfg
    a, b, _ = packing.sentence_pair(self.corpus, self.blocks[self.order[i]], rng,
                                    cfg.seq_len - 3, nsp_prob=0.0)
    swapped = rng.random() < cfg.nsp_probability
    if swapped:
      a, b = b, a
    input_ids, token_type_ids, attention_mask = packing.format_pair(a, b, self.tokenizer,
                                                                    cfg.seq_len)
    return dict(self.mask(input_ids, rng), token_type_ids=token_type_ids,
                attention_mask=attention_mask, sop_labels=np.int32(swapped))
