"""Evaluation metrics of fine-tuning tasks, in plain numpy (no sklearn/scipy/seqeval).

Conventions follow the references the task scores are reported against: GLUE (F1 of
class 1 for binary tasks, sklearn's multiclass MCC) and seqeval's default conlleval
mode for entity F1. Every metric is 0.0 where it is undefined (no examples, a zero
denominator, a constant side of a correlation) so an eval loop never sees NaN.
All results are Python floats.
"""
import numpy as np


def _ratio(num, den):
  return float(num / den) if den else 0.0


def accuracy(labels, predictions):
  """Fraction of exact matches."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  return _ratio((labels == predictions).sum(), labels.size)


def _f1_of(labels, predictions, k):
  tp = np.sum((predictions == k) & (labels == k))
  precision = _ratio(tp, np.sum(predictions == k))
  recall = _ratio(tp, np.sum(labels == k))
  return _ratio(2 * precision * recall, precision + recall)


def f1(labels, predictions, num_classes):
  """F1 of class 1 when binary (GLUE MRPC/QQP); else macro F1 over the classes present.

  A class with neither true nor predicted examples is skipped in the macro average."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if num_classes == 2:
    return _f1_of(labels, predictions, 1)
  present = [k for k in range(num_classes) if np.any(labels == k) or np.any(predictions == k)]
  return _ratio(sum(_f1_of(labels, predictions, k) for k in present), len(present))


def matthews_corrcoef(labels, predictions):
  """Multiclass (Gorodkin) MCC; the binary MCC for two classes, 0.0 when undefined."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  _, inverse = np.unique(np.concatenate([labels.ravel(), predictions.ravel()]),
                         return_inverse=True)
  n = labels.size
  true_idx, pred_idx = inverse[:n], inverse[n:]
  k = int(inverse.max()) + 1 if inverse.size else 0
  t = np.bincount(true_idx, minlength=k).astype(np.float64)
  p = np.bincount(pred_idx, minlength=k).astype(np.float64)
  c, s = float(np.sum(true_idx == pred_idx)), float(n)
  den = np.sqrt((s * s - p @ p) * (s * s - t @ t))
  return _ratio(c * s - t @ p, den)


def pearson(labels, predictions):
  """Pearson correlation; 0.0 when either side is constant (as GLUE reports NaN as 0)."""
  x = np.asarray(labels, np.float64).ravel()
  y = np.asarray(predictions, np.float64).ravel()
  if x.size == 0 or x.min() == x.max() or y.min() == y.max():
    return 0.0  # checked exactly: the float mean of equal values can miss them by an ulp
  x, y = x - x.mean(), y - y.mean()
  return _ratio(x @ y, np.sqrt((x @ x) * (y @ y)))


def _rank(x):
  """1-based ranks, ties sharing their average rank."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  return (ends - (counts - 1) / 2.0)[inverse.ravel()]


def spearman(labels, predictions):
  """Pearson of the (average-tie) ranks; 0.0 when either side is constant."""
  x = np.asarray(labels, np.float64).ravel()
  y = np.asarray(predictions, np.float64).ravel()
  return pearson(_rank(x), _rank(y)) if x.size else 0.0


def _split_tag(tag):
  """(prefix, type); anything other than B-X / I-X counts as outside."""
  if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
    return tag[0], tag[2:]
  return "O", None


def _chunks(seq):
  """conlleval chunks (type, start, end_exclusive) of one IOB1/IOB2 tag sequence.

  A chunk starts at B-X, or at I-X after O or another type; it ends at O, B- or a
  type change."""
  chunks, start, kind = [], None, None
  for i, tag in enumerate(list(seq) + ["O"]):
    prefix, typ = _split_tag(tag)
    if kind is not None and (prefix != "I" or typ != kind):
      chunks.append((kind, start, i))
      kind = None
    if prefix != "O" and kind is None:
      start, kind = i, typ
  return chunks


def entity_f1(label_seqs, prediction_seqs):
  """Span-level precision/recall/F1 (seqeval default mode): type and exact span must match."""
  true, pred = set(), set()
  for s, (labels, preds) in enumerate(zip(label_seqs, prediction_seqs)):
    true.update((s,) + c for c in _chunks(labels))
    pred.update((s,) + c for c in _chunks(preds))
  correct = len(true & pred)
  precision, recall = _ratio(correct, len(pred)), _ratio(correct, len(true))
  return dict(precision=precision, recall=recall,
              f1=_ratio(2 * precision * recall, precision + recall))


def classification_metrics(labels, logits):
  """Accuracy, F1 (num_classes = C), MCC and mean softmax cross-entropy (float64)."""
  labels = np.asarray(labels).astype(np.int64)
  logits = np.asarray(logits).astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, labels[:, None], -1)[:, 0]
  predictions = logits.argmax(-1)
  return dict(accuracy=accuracy(labels, predictions),
              f1=f1(labels, predictions, logits.shape[-1]),
              mcc=matthews_corrcoef(labels, predictions),
              loss=float(nll.mean()) if nll.size else 0.0)


def regression_metrics(labels, predictions):
  """Mean squared error as "loss", plus Pearson and Spearman correlations."""
  x = np.asarray(labels, np.float64).ravel()
  y = np.asarray(predictions, np.float64).ravel()
  return dict(loss=float(np.mean((x - y) ** 2)) if x.size else 0.0,
              pearson=pearson(x, y), spearman=spearman(x, y))


def token_metrics(label_seqs, prediction_seqs):
  """Per-tag accuracy over all words plus entity-level precision/recall/F1."""
  pairs = [(l, p) for ls, ps in zip(label_seqs, prediction_seqs) for l, p in zip(ls, ps)]
  out = dict(accuracy=_ratio(sum(l == p for l, p in pairs), len(pairs)))
  out.update(entity_f1(label_seqs, prediction_seqs))
  return out
