"""The Grain input pipeline: global batch k is a pure function of (seed, k).

Each model family has an `Examples` class whose `example(i)` builds
example i from the tokenised corpus and a generator seeded by (seed, i)
(lm_jax/families.py says which class a family uses). Global batch k
holds examples [k*B, (k+1)*B); process p of P reads only its slice
[k*B + p*B/P, k*B + (p+1)*B/P). Resuming at step k, or restarting on another
number of hosts, therefore sees exactly the same global batches, with no
iterator state to save.
"""
import grain
import numpy as np

from lm_jax.data import packing
from lm_jax.errors import UserError
from lm_jax.objectives import masking


class Examples:
  """Random-access training examples of one family; batching is shared.

  Subclasses set `self.seed` and define `example(i)` -> dict of numpy arrays.
  """

  seed = 0

  def example(self, i):
    raise NotImplementedError

  def global_batch(self, step, batch_size):
    """Global batch `step` built in one process (evaluation, tests, tools)."""
    return _stack([self.example(step * batch_size + r) for r in range(batch_size)])

  def batches(self, batch_size, start_step, end_step, process_index=0, process_count=1,
              threads=2):
    """Iterator over this process's share of global batches [start_step, end_step)."""
    if batch_size % process_count:
      raise UserError(f"train.batch_size={batch_size} is not divisible by the "
                      f"{process_count} processes; make it a multiple.")
    local = batch_size // process_count

    def global_index(j):
      step, r = divmod(j, local)
      return step * batch_size + process_index * local + r

    ds = (grain.MapDataset.range(start_step * local, end_step * local)
          .map(lambda j: self.example(global_index(j)))
          .batch(local, batch_fn=_stack))
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                     prefetch_buffer_size=4 * threads)))


class BertExamples(Examples):
  """BERT pre-training examples: sentence pairs for NSP, masked for MLM.

  Example i is built from block `order[i]` (a permutation of the blocks,
  reshuffled every epoch).
  """

  def __init__(self, documents, tokenizer, data_cfg, seed):
    self.tokenizer = tokenizer
    self.cfg = data_cfg
    self.seed = seed
    self.corpus = packing.tokenize_corpus(documents, tokenizer)
    self.blocks = packing.make_blocks(self.corpus, data_cfg.seq_len - 3)
    if len(self.blocks) == 0:
      raise UserError("The corpus yields no training example; give it more text.")
    self.order = grain.MapDataset.range(len(self.blocks)).shuffle(seed=seed)
    self.word_starts = tokenizer.word_starts()

  @property
  def num_tokens(self):
    return len(self.corpus.tokens)

  def example(self, i):
    rng = np.random.default_rng((self.seed, i))
    cfg, tok = self.cfg, self.tokenizer
    a, b, label = packing.sentence_pair(self.corpus, self.blocks[self.order[i]], rng,
                                        cfg.seq_len - 3, cfg.nsp_probability)
    input_ids, token_type_ids, attention_mask = packing.format_pair(a, b, tok, cfg.seq_len)
    masked, positions, ids, weights = masking.mask_tokens(
        input_ids, rng, vocab_size=tok.vocab_size, mask_id=tok.mask_id,
        special_ids=tok.special_ids, word_starts=self.word_starts,
        mask_prob=cfg.mask_probability, max_predictions=cfg.max_predictions_per_seq,
        whole_word=cfg.whole_word_masking)
    return dict(input_ids=masked, token_type_ids=token_type_ids, attention_mask=attention_mask,
                masked_positions=positions, masked_ids=ids, masked_weights=weights,
                nsp_labels=np.int32(label))


def _stack(examples):
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
