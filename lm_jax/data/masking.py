"""Masked-language-model masking of one packed example (numpy, on the host).

Dynamic masking: the mask of example i is drawn from a generator seeded by
(seed, i), so a new epoch sees new masks and any example can be rebuilt
exactly, with no iterator state.
"""
import numpy as np


def mask_tokens(input_ids, rng, *, vocab_size, mask_id, special_ids, word_starts,
                mask_prob, max_predictions, whole_word):
  """BERT's masking: choose ~`mask_prob` of the maskable tokens (at most
  `max_predictions`); of those 80% become [MASK], 10% a random token, 10%
  stay. With `whole_word`, a word's pieces are chosen together.

  Returns (masked input_ids, positions [max_predictions], original ids at
  those positions, weights: 1.0 for real predictions, 0.0 for padding).
  """
  n = len(input_ids)
  maskable = ~np.isin(input_ids, list(special_ids))
  # Group pieces into units: a unit starts at a word start (whole-word) or at every piece.
  starts = maskable & (word_starts[input_ids] if whole_word else True)
  starts[maskable & ~np.roll(maskable, 1)] = True  # a unit never spans a special token
  unit_of = np.cumsum(starts) - 1
  units = np.flatnonzero(starts)
  num_to_predict = min(max_predictions, max(1, int(round(maskable.sum() * mask_prob))))

  chosen = np.zeros(n, bool)
  count = 0
  for u in rng.permutation(len(units)):
    members = np.flatnonzero(maskable & (unit_of == u))
    if count + len(members) > num_to_predict:
      continue  # as BERT: skip a whole word that would overflow the budget
    chosen[members] = True
    count += len(members)
    if count == num_to_predict:
      break

  positions = np.flatnonzero(chosen)
  labels = input_ids[positions]
  masked = input_ids.copy()
  action = rng.random(len(positions))
  masked[positions[action < 0.8]] = mask_id
  replace = positions[(action >= 0.8) & (action < 0.9)]
  masked[replace] = rng.integers(0, vocab_size, len(replace))  # as BERT: any piece

  pad = max_predictions - len(positions)
  return (masked,
          np.pad(positions, (0, pad)).astype(np.int32),
          np.pad(labels, (0, pad)).astype(np.int32),
          np.pad(np.ones(len(positions), np.float32), (0, pad)))
