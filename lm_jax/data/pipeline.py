"""The Grain input pipeline: global batch k is a pure function of (seed, k).

Each model family has an `Examples` class whose `example(i)` builds
example i from the tokenised corpus and a generator seeded by (seed, i)
(its record in lm_jax/families/ says which class a family uses). Global batch k
holds examples [k*B, (k+1)*B); process p of P reads only its slice
[k*B + p*B/P, k*B + (p+1)*B/P). Resuming at step k, or restarting on another
number of hosts, therefore sees exactly the same global batches, with no
iterator state to save.
"""
import grain
import numpy as np

from lm_jax.errors import UserError


class Examples:
  """Random-access training examples of one family; batching is shared.

  Subclasses set `self.seed` and define `example(i)` -> dict of numpy arrays.
  """

  seed = 0

  def example(self, i):
    raise NotImplementedError

  def global_batch(self, step, batch_size):
    """Global batch `step` built in one process (evaluation, tests, tools)."""
    return stack([self.example(step * batch_size + r) for r in range(batch_size)])

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
          .batch(local, batch_fn=stack))
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                     prefetch_buffer_size=4 * threads)))


def stack(examples):
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
