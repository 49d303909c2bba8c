"""The Grain input pipeline: global batch k is a pure function of (seed, k).

Each model family has an `Examples` class (its record in lm_jax/families/
says which). At preparation (data/prepare.py) its `pack` turns the documents
of one shard into example material, records of a layout named `LAYOUT`; at
training it reads that material from a prepared corpus (data/prepared.py):
`examples(indices)` builds examples i from record `order[i]` (a lazy
shuffle, new every epoch) and a generator seeded by (seed, i), reading the
records of a batch together.

Global batch k holds examples [k*B, (k+1)*B); process p of P builds only its
slice [k*B + p*B/P, k*B + (p+1)*B/P), and reads only those records.
Resuming at step k, or restarting on another number of hosts, therefore sees
exactly the same global batches, with no iterator state to save.
"""
import grain
import numpy as np

from lm_jax.errors import UserError


class Examples:
  """Random-access training examples of one family over a prepared corpus; batching is shared.

  Subclasses set LAYOUT (and WORDS for word documents), define `pack` (preparation)
  and `examples(indices)` -> list of dicts of numpy arrays (training).
  """

  LAYOUT = ""     # the material it reads: CORPUS/<LAYOUT>-<seq_len>/
  WORDS = False   # its documents are words (ELMo), not a tokenizer's ids

  @staticmethod
  def pack(documents, shard, seq_len, tokenizer):
    """Records (bytes) of example material from the documents of level-1 shard `shard`."""
    raise NotImplementedError

  def __init__(self, material, tokenizer, data_cfg, seed):
    if (material.layout, material.seq_len) != (self.LAYOUT, data_cfg.seq_len):
      raise UserError(f"{material.corpus.path}/{material.name} holds {material.layout} examples "
                      f"for seq_len {material.seq_len}, not {self.LAYOUT} for data.seq_len="
                      f"{data_cfg.seq_len}; name the corpus's matching material.")
    if len(material) == 0:
      raise UserError(f"The {material.split} split of {material.corpus.path} yields no example "
                      f"of data.seq_len={data_cfg.seq_len}; give it more text.")
    self.material, self.records = material, material.records
    self.tokenizer, self.cfg, self.seed = tokenizer, data_cfg, seed
    self.order = grain.MapDataset.range(len(self.records)).shuffle(seed=seed)

  @property
  def num_tokens(self):
    return self.material.num_tokens

  def examples(self, indices):
    raise NotImplementedError

  def example(self, i):
    return self.examples([i])[0]

  def read(self, indices):
    """The records of examples `indices` (this epoch's order), read together."""
    return self.records.read([self.order[i] for i in indices])

  def global_batch(self, step, batch_size):
    """Global batch `step` built in one process (evaluation, tests, tools)."""
    return stack(self.examples(range(step * batch_size, (step + 1) * batch_size)))

  def batches(self, batch_size, start_step, end_step, process_index=0, process_count=1,
              threads=2):
    """Iterator over this process's share of global batches [start_step, end_step),
    built by `threads` Grain threads ahead of the step."""
    if batch_size % process_count:
      raise UserError(f"train.batch_size={batch_size} is not divisible by the "
                      f"{process_count} processes; make it a multiple.")
    local = batch_size // process_count
    first = process_index * local

    def local_batch(step):
      start = step * batch_size + first
      return stack(self.examples(range(start, start + local)))

    ds = grain.MapDataset.range(start_step, end_step).map(local_batch)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                     prefetch_buffer_size=2 * threads)))


def stack(examples):
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
