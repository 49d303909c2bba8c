"""Labelled data for fine-tuning: records, and the examples built from them.

A record is one dict per example, read from
- a tensorflow-datasets dataset by name (`data.tfds_name`, e.g. glue/sst2,
  imdb_reviews, conll2003), through `tfds.data_source` (no TensorFlow), or
- local files (`data.files` / `data.eval_files`): .csv, .tsv or .jsonl
  (optionally .gz) with a header / keys naming the columns.
`data.text_keys` names the text column(s): one, or two comma-separated for
sentence pairs; for token classification, the column holding each
sentence's list of words. `data.label_key` names the label (a class name or
index, a number for regression, a list of tags for token classification).

Documents longer than the window (`data.long_document`):
- truncate: the first seq_len - 2 pieces;
- head_tail: the first quarter of the budget from the head, the rest from
  the tail (Sun et al., 2019, "How to fine-tune BERT for text classification");
- sliding_window: overlapping windows every `data.window_stride` pieces
  (default half a window) that cover the whole document; each window is a
  training example with the document's label, and evaluation averages the
  windows' logits per document, so a 2 000-token review is read whole.
"""
import csv
import io
import json

import grain
import numpy as np

from lm_jax.data import packing, pipeline, sources
from lm_jax.errors import UserError

IGNORED = -100  # HF's label for pieces that carry no tag (continuations, specials, padding)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------

def _plain(value):
  """A tfds value as plain Python: bytes -> str, arrays -> lists."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
  if isinstance(value, np.generic):
    return value.item()
  return value


def _file_records(pattern, key):
  records = []
  for path in sources.matching_files(pattern, key):
    text = sources.read_text(path)
    if path.endswith((".jsonl", ".jsonl.gz")):
      for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
          try:
            records.append(dict(json.loads(line), _where=f"{path}:{n}"))
          except (ValueError, TypeError):
            raise UserError(f"{path}:{n} is not a JSON object; fix the line.") from None
    elif path.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
      delimiter = "\t" if ".tsv" in path else ","
      for n, row in enumerate(csv.DictReader(io.StringIO(text), delimiter=delimiter), 2):
        records.append(dict(row, _where=f"{path}:{n}"))
    else:
      raise UserError(f"{path} is not .csv, .tsv or .jsonl; fine-tuning reads labelled "
                      "records from those formats.")
  return records


def records(data_cfg, split):
  """The labelled records of split 'train' or 'eval' ([] when none is configured)."""
  if data_cfg.tfds_name:
    tfds_split = data_cfg.tfds_split if split == "train" else data_cfg.tfds_eval_split
    if not tfds_split:
      return []
    source = sources.tfds_source(data_cfg.tfds_name, tfds_split, data_cfg.tfds_data_dir)
    n = len(source) if data_cfg.max_documents < 0 else min(len(source), data_cfg.max_documents)
    where = f"{data_cfg.tfds_name}[{tfds_split}]"
    out = [dict({k: _plain(v) for k, v in source[i].items()}, _where=f"{where} #{i}")
           for i in range(n)]
  else:
    pattern = data_cfg.files if split == "train" else data_cfg.eval_files
    if not pattern:
      if split == "train":
        raise UserError("Fine-tuning needs labelled data: set data.files (csv/tsv/jsonl) or "
                        "data.tfds_name.")
      return []
    out = _file_records(pattern, "data.files" if split == "train" else "data.eval_files")
    if data_cfg.max_documents >= 0:
      out = out[:data_cfg.max_documents]
  if split == "train" and not out:
    raise UserError("The fine-tuning data has no records; check data.files or data.tfds_name.")
  return out


def _field(record, key):
  if key not in record:
    names = sorted(k for k in record if k != "_where")
    raise UserError(f"{record['_where']} has no {key!r} field (it has {names}); set "
                    "data.text_keys / data.label_key to its column names.")
  return record[key]


def label_id(value, labels, where):
  """A record's label as a class index (classification) or a float (regression)."""
  if len(labels) == 1:
    try:
      return float(value)
    except (TypeError, ValueError):
      raise UserError(f"{where}: label {value!r} is not a number, as regression "
                      "(one model.labels entry) needs.") from None
  if isinstance(value, str) and value in labels:
    return labels.index(value)
  if isinstance(value, str) and value.strip().lstrip("-").isdigit():
    value = int(value)
  if isinstance(value, (int, np.integer)) and 0 <= value < len(labels):
    return int(value)
  raise UserError(f"{where}: label {value!r} is not one of model.labels={list(labels)} (names "
                  f"or indices 0..{len(labels) - 1}); fix the data or model.labels.")


# ---------------------------------------------------------------------------
# Long documents
# ---------------------------------------------------------------------------

def split_document(ids, budget, mode, stride):
  """The windows (lists of ids, each at most `budget` long) that stand for `ids`."""
  if len(ids) <= budget:
    return [ids]
  if mode == "truncate":
    return [ids[:budget]]
  if mode == "head_tail":
    head = budget // 4
    return [ids[:head] + ids[len(ids) - (budget - head):]]
  starts = list(range(0, len(ids) - budget, stride)) + [len(ids) - budget]
  return [ids[s:s + budget] for s in starts]


def _truncate_pair(a, b, budget):
  """HF's longest_first: drop tokens from the end of the longer text until both fit."""
  a, b = list(a), list(b)
  while len(a) + len(b) > budget:
    (a if len(a) >= len(b) else b).pop()
  return a, b


# ---------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------

class LabelledExamples(pipeline.Examples):
  """Encoded rows (one per window) with their labels and documents.

  Training example i is row `order[i]` (shuffled, reshuffled every epoch);
  evaluation reads every row once, in order (`eval_batches`).
  """

  def __init__(self, records_, tokenizer, data_cfg, seed, labels):
    self.tokenizer, self.cfg, self.seed, self.labels = tokenizer, data_cfg, seed, tuple(labels)
    self.text_keys = [k.strip() for k in data_cfg.text_keys.split(",") if k.strip()]
    self.rows = []          # dicts of numpy arrays, one per window
    self.row_document = []  # the record each row came from
    self.targets = []       # per record: its label (sequence) or its tag ids (token)
    self.encode(records_)
    if not self.rows:
      raise UserError("The fine-tuning data yields no example; check data.text_keys.")
    self.row_document = np.asarray(self.row_document)
    self.order = grain.MapDataset.range(len(self.rows)).shuffle(seed=seed)

  def encode(self, records_):
    raise NotImplementedError

  def add_row(self, document, input_ids, token_type_ids, attention_mask, labels, weights):
    self.rows.append(dict(input_ids=input_ids, token_type_ids=token_type_ids,
                          attention_mask=attention_mask, labels=labels, weights=weights))
    self.row_document.append(document)

  def examples(self, indices):
    """The rows of examples `indices` (in memory: fine-tuning sets are small)."""
    return [self.rows[self.order[i]] for i in indices]

  def eval_batches(self, batch_size):
    """Every row once, in batches of `batch_size` (the last one padded with
    weight-0 copies of row 0)."""
    for start in range(0, len(self.rows), batch_size):
      rows = self.rows[start:start + batch_size]
      pad = [dict(self.rows[0], weights=np.zeros_like(self.rows[0]["weights"]))] * (
          batch_size - len(rows))
      yield pipeline.stack(rows + pad)


class SequenceExamples(LabelledExamples):
  """One label per record: single texts or sentence pairs (sequence
  classification and regression)."""

  def encode(self, records_):
    cfg, tok = self.cfg, self.tokenizer
    texts = [[_field(r, k) for r in records_] for k in self.text_keys]
    encoded = [tok.encode([str(t) for t in column]) for column in texts]
    stride = cfg.window_stride if cfg.window_stride > 0 else max((cfg.seq_len - 2) // 2, 1)
    regression = len(self.labels) == 1
    for d, record in enumerate(records_):
      label = label_id(_field(record, cfg.label_key), self.labels, record["_where"])
      self.targets.append(label)
      target = np.float32(label) if regression else np.int32(label)
      if len(encoded) == 2:  # a pair: config.validate allows only truncation
        a, b = _truncate_pair(encoded[0][d], encoded[1][d], cfg.seq_len - 3)
        self.add_row(d, *packing.format_pair(a, b, tok, cfg.seq_len), target, np.float32(1))
        continue
      for window in split_document(encoded[0][d], cfg.seq_len - 2, cfg.long_document, stride):
        self.add_row(d, *packing.format_single(window, tok, cfg.seq_len), target, np.float32(1))
    self.targets = np.asarray(self.targets)


class TokenExamples(LabelledExamples):
  """One tag per word (token classification, e.g. NER): the tag goes on the
  word's first piece, as in HF's run_ner; sentences longer than the window
  are truncated, and their cut words count as predicted "O" in evaluation."""

  def encode(self, records_):
    cfg, tok = self.cfg, self.tokenizer
    (key,) = self.text_keys
    for d, record in enumerate(records_):
      words, tags = _field(record, key), _field(record, cfg.label_key)
      if isinstance(words, str) or len(words) != len(tags):
        raise UserError(f"{record['_where']}: {key!r} must be a list of words with one tag "
                        f"each in {cfg.label_key!r}.")
      tag_ids = [label_id(t, self.labels, record["_where"]) for t in tags]
      self.targets.append(tag_ids)
      pieces, labels = [], []
      for word_pieces, tag in zip(tok.encode([str(w) for w in words]), tag_ids):
        word_pieces = word_pieces or [tok.unk_id]
        pieces += word_pieces
        labels += [tag] + [IGNORED] * (len(word_pieces) - 1)
      pieces, labels = pieces[:cfg.seq_len - 2], labels[:cfg.seq_len - 2]
      row_labels = np.full(cfg.seq_len, IGNORED, np.int32)
      row_labels[1:1 + len(labels)] = labels
      real = row_labels != IGNORED
      self.add_row(d, *packing.format_single(pieces, tok, cfg.seq_len),
                   np.where(real, row_labels, 0).astype(np.int32), real.astype(np.float32))
