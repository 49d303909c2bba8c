"""Task metrics against hand-computed values from their formulas."""
import math

import numpy as np
import pytest

from lm_jax.objectives import task_metrics as tm


LABELS = [1, 1, 0, 0, 1, 0, 1, 1]
PREDS = [1, 0, 0, 1, 1, 0, 1, 0]
# TP: idx 0, 4, 6; FN: idx 1, 7; TN: idx 2, 5; FP: idx 3.
TP, FN, TN, FP = 3, 2, 2, 1


def test_accuracy_and_binary_f1():
  assert tm.accuracy(LABELS, PREDS) == pytest.approx((TP + TN) / 8)
  precision, recall = TP / (TP + FP), TP / (TP + FN)
  assert tm.f1(LABELS, PREDS, 2) == pytest.approx(2 * precision * recall / (precision + recall))
  assert tm.f1([0, 0], [0, 0], 2) == 0.0  # no positive class at all
  assert tm.accuracy([], []) == 0.0


def test_macro_f1_skips_absent_classes():
  labels, preds = [0, 1, 2, 2], [0, 2, 2, 1]
  # class 0: F1 1; class 1: tp 0 -> 0; class 2: p = r = 1/2 -> 1/2; class 3 absent.
  assert tm.f1(labels, preds, 4) == pytest.approx((1 + 0 + 0.5) / 3)


def test_binary_mcc_from_confusion():
  expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
  assert tm.matthews_corrcoef(LABELS, PREDS) == pytest.approx(expected)
  # Relabelling the two classes (as multiclass ids) leaves the multiclass form unchanged.
  relabel = {0: 7, 1: 3}
  assert tm.matthews_corrcoef([relabel[x] for x in LABELS], [relabel[x] for x in PREDS]) \
      == pytest.approx(expected)


def test_multiclass_mcc():
  labels, preds = [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]
  # Gorodkin: c = 4 correct, s = 6, t = (2, 2, 2), p = (1, 2, 3).
  expected = (4 * 6 - (2 + 4 + 6)) / math.sqrt((36 - (1 + 4 + 9)) * (36 - 12))
  assert tm.matthews_corrcoef(labels, preds) == pytest.approx(expected)
  assert tm.matthews_corrcoef(labels, labels) == pytest.approx(1.0)


def test_mcc_undefined_is_zero():
  assert tm.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
  assert tm.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0


def test_pearson_and_spearman_with_ties():
  x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
  xc, yc = np.array(x) - 2.5, np.array(y) - 5.0
  assert tm.pearson(x, y) == pytest.approx(xc @ yc / math.sqrt((xc @ xc) * (yc @ yc)))
  # Ranks: [1, 2.5, 2.5, 4] and [1, 3, 2, 4]; centred [-1.5, 0, 0, 1.5], [-1.5, .5, -.5, 1.5].
  assert tm.spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
  assert tm.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)


def test_correlations_constant_side_is_zero():
  assert tm.pearson([1, 1, 1], [1, 2, 3]) == 0.0
  assert tm.spearman([1, 2, 3], [5, 5, 5]) == 0.0
  # The float64 mean of [0.1] * 3 is not 0.1; the result must still be exactly 0.
  assert tm.pearson([0.1] * 3, [0.3, 0.5, 0.9]) == 0.0
  assert tm.regression_metrics([0.3, 0.5, 0.9], [0.1] * 3)["pearson"] == 0.0


def test_entity_f1_conlleval_rules():
  # I- after O starts a chunk (IOB1); a type change splits; B- after I- of same type splits.
  assert tm._chunks(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "O"]) == [
      ("PER", 1, 3), ("LOC", 3, 4), ("LOC", 4, 5)]
  assert tm._chunks(["B-PER", "I-PER"]) == [("PER", 0, 2)]
  labels = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "O"]]
  preds = [["B-PER", "O", "O", "B-LOC"], ["B-MISC", "O"]]
  # True: PER(0,2), LOC(3,4), ORG. Pred: PER(0,1) partial -> wrong, LOC right, MISC wrong type.
  out = tm.entity_f1(labels, preds)
  assert out["precision"] == pytest.approx(1 / 3) and out["recall"] == pytest.approx(1 / 3)
  assert out["f1"] == pytest.approx(1 / 3)
  assert tm.entity_f1([["O", "O"]], [["O", "O"]]) == dict(precision=0.0, recall=0.0, f1=0.0)


def test_token_metrics():
  labels = [["B-PER", "I-PER", "O"], ["B-LOC"]]
  preds = [["B-PER", "I-PER", "B-LOC"], ["O"]]
  out = tm.token_metrics(labels, preds)
  assert out["accuracy"] == pytest.approx(2 / 4)
  assert out["precision"] == pytest.approx(1 / 2) and out["recall"] == pytest.approx(1 / 2)
  assert out["f1"] == pytest.approx(1 / 2)
  assert all(type(v) is float for v in out.values())


def test_classification_metrics_loss_float64():
  rng = np.random.default_rng(0)
  logits = (rng.standard_normal((16, 3)) * 50).astype(np.float32)  # large: needs stability
  labels = rng.integers(0, 3, 16)
  out = tm.classification_metrics(labels, logits)
  x = logits.astype(np.float64)
  lse = np.array([math.log(sum(math.exp(v - row.max()) for v in row)) + row.max() for row in x])
  assert out["loss"] == pytest.approx(float(np.mean(lse - x[np.arange(16), labels])), rel=1e-12)
  preds = x.argmax(-1)
  assert out["accuracy"] == pytest.approx(tm.accuracy(labels, preds))
  assert out["f1"] == pytest.approx(tm.f1(labels, preds, 3))
  assert out["mcc"] == pytest.approx(tm.matthews_corrcoef(labels, preds))
  assert all(type(v) is float for v in out.values())
  assert math.isfinite(tm.classification_metrics([0], np.array([[1e4, -1e4]], np.float16))["loss"])


def test_regression_metrics():
  out = tm.regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
  assert out["loss"] == pytest.approx(1 / 3)
  assert out["spearman"] == pytest.approx(1.0)
  assert out["pearson"] == pytest.approx(tm.pearson([1, 2, 3], [1, 2, 4]))
  assert all(type(v) is float for v in out.values())
