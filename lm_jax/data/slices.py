"""Input slices: the part of the text source that one prepared shard reads.

`plan(data, split, shard_bytes)` cuts a split's input into slices without
reading its text, from file sizes and dataset lengths alone:

- files, local or gs:// (data.files / data.eval_files): byte ranges of about
  `shard_bytes`, consecutive small files sharing one; a .gz file is one
  range (it cannot seek);
- a tensorflow-datasets split: index ranges;
- the embedded corpus: one slice per novel.

`documents(slice)` yields the slice's documents: those that *start* in its
ranges, so every document belongs to exactly one slice, whatever the cut. A
slice is a JSON-able dict; its documents are a pure function of it and the
files.

File formats (as data/sources.py): .jsonl(.gz) holds one JSON object with a
`text` field per line; other files hold blank-line-separated documents
(each joined into one line) when their first MiB has a blank line, else one
document per line. A blank line holds ASCII whitespace only.
"""
import json
import os
import re

from lm_jax.data import sources
from lm_jax.errors import UserError

_HEAD_BYTES = 1 << 20  # what decides a file's format
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*\n")
_SPACE = b" \t\r\f\v"
_TFDS_GUESS_BYTES = 4096  # bytes per document when tfds does not know the split's size


def source_spec(data):
  """The config keys that name the input (what a prepared corpus was made from)."""
  if data.tfds_name:
    keys = ("tfds_name", "tfds_split", "tfds_eval_split", "tfds_text_key", "tfds_data_dir",
            "max_documents")
  elif data.files:
    keys = ("files", "eval_files")
  else:
    return dict(embedded=sorted(_novels("train") + _novels("eval")), shard_mb=data.shard_mb)
  return dict({k: data[k] for k in keys}, shard_mb=data.shard_mb)


def plan(data, split, shard_bytes):
  """The slices of split 'train' or 'eval' ([] when the config names no such split)."""
  if data.tfds_name:
    tfds_split = data.tfds_split if split == "train" else data.tfds_eval_split
    return _tfds_plan(data, tfds_split, shard_bytes) if tfds_split else []
  if data.files:
    key = "data.files" if split == "train" else "data.eval_files"
    pattern = data.files if split == "train" else data.eval_files
    return _file_plan(sources.matching_sizes(pattern, key), shard_bytes) if pattern else []
  return [dict(parts=[dict(novel=name, bytes=os.path.getsize(_novel_path(name)))])
          for name in _novels(split)]


def size(slice_):
  """The input bytes of a slice, on disk (tfds: an estimate), for progress lines."""
  return sum(p["bytes"] if "bytes" in p else p["end"] - p["start"] for p in slice_["parts"])


def documents(slice_):
  """The documents (str) of a slice, in order."""
  for part in slice_["parts"]:
    if "novel" in part:
      yield from sources.novel_documents(_novel_path(part["novel"]))
    elif "tfds" in part:
      yield from _tfds_documents(part)
    else:
      yield from _file_documents(part["path"], part["start"], part["end"])


# ---------------------------------------------------------------------------
# The embedded corpus
# ---------------------------------------------------------------------------

def _novels(split):
  names = sorted(f[:-len(".txt.gz")] for f in os.listdir(sources.CORPUS_DIR) if f.endswith(".txt.gz"))
  return [n for n in names if (n in sources.EVAL_NOVELS) == (split == "eval")]


def _novel_path(name):
  return os.path.join(sources.CORPUS_DIR, name + ".txt.gz")


# ---------------------------------------------------------------------------
# Files (local or remote)
# ---------------------------------------------------------------------------

def _file_plan(files, shard_bytes):
  """Byte ranges of about shard_bytes over the files ((path, size), in order)."""
  slices, parts, filled = [], [], 0
  for path, n in files:
    pos = 0
    while pos < n:
      if path.endswith(".gz"):  # whole, or not at all
        parts.append(dict(path=path, start=0, end=None, bytes=n))
        filled, pos = filled + n, n
      else:
        end = min(n, pos + shard_bytes - filled)
        parts.append(dict(path=path, start=pos, end=end))
        filled, pos = filled + end - pos, end
      if filled >= shard_bytes:
        slices.append(dict(parts=parts))
        parts, filled = [], 0
  if parts:
    slices.append(dict(parts=parts))
  return slices


def _text(path, data, offset, final=True):
  return sources.decode(path, data, final, offset)


def _file_documents(path, start, end):
  """The documents of `path` that start in bytes [start, end) (end None: to the end)."""
  with sources.reading(path), sources.open_bytes(path) as f:
    head = f.read(_HEAD_BYTES)
    _text(path, head, 0, final=False)  # a binary or UTF-16 file is told as such, up front
    if path.endswith((".jsonl", ".jsonl.gz")):
      yield from _json_lines(path, _lines(f, start, end))
    elif _BLANK_LINE.search(head):
      yield from _paragraphs(path, f, start, end)
    else:
      for pos, line in _lines(f, start, end):
        doc = _text(path, line, pos).strip()
        if doc:
          yield doc


def _first_line_start(f, start):
  """The offset of the first line that starts at or after `start`."""
  if start == 0:
    return 0
  f.seek(start - 1)
  return start if f.read(1) == b"\n" else start + len(f.readline())


def _lines(f, start, end):
  """(offset, line) of the lines starting in [start, end), and past `end` while the
  caller keeps reading (a paragraph that started inside goes on)."""
  pos = _first_line_start(f, start)
  f.seek(pos)
  for line in f:
    if end is not None and pos >= end:
      return
    yield pos, line
    pos += len(line)


def _json_lines(path, lines):
  for pos, line in lines:
    if line.strip():
      try:
        yield json.loads(line)["text"]
      except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} has a line at byte {pos} that is not a JSON object with a "
                        "'text' field; fix the line or use plain text files.") from None


def _previous_line_blank(f, pos):
  """Whether the line ending just before offset `pos` (> 0) holds only whitespace."""
  end = pos - 1  # that line's newline
  while end > 0:
    begin = max(0, end - 4096)
    f.seek(begin)
    rest = f.read(end - begin).rstrip(_SPACE)
    if rest:
      return rest.endswith(b"\n")
    end = begin
  return True  # whitespace back to the start of the file


def _paragraphs(path, f, start, end):
  """Blank-line-separated documents whose first line starts in [start, end)."""
  first = _first_line_start(f, start)
  prev_blank = first == 0 or _previous_line_blank(f, first)
  lines = _lines(f, first, None)
  para, para_pos = [], 0
  for pos, line in lines:
    blank = not line.strip()
    if blank or prev_blank:  # a paragraph ends, or one starts here
      if para:
        yield " ".join(_text(path, b"".join(para), para_pos).split())
        para = []
      if pos >= (end if end is not None else float("inf")):
        return
      if not blank:
        para, para_pos = [line], pos
    elif para:  # (a paragraph begun before `start` is skipped)
      para.append(line)
    prev_blank = blank
  if para:
    yield " ".join(_text(path, b"".join(para), para_pos).split())


# ---------------------------------------------------------------------------
# tensorflow-datasets
# ---------------------------------------------------------------------------

def _tfds_plan(data, split, shard_bytes):
  source = sources.tfds_source(data.tfds_name, split, data.tfds_data_dir)
  n = len(source) if data.max_documents < 0 else min(len(source), data.max_documents)
  try:
    info = source.dataset_info.splits[split]
    per_doc = info.num_bytes / max(1, info.num_examples) or _TFDS_GUESS_BYTES
  except (KeyError, AttributeError, ValueError, TypeError):  # a split slice, or a mock
    per_doc = _TFDS_GUESS_BYTES
  step = max(1, int(shard_bytes // per_doc))
  return [dict(parts=[dict(tfds=data.tfds_name, split=split, data_dir=data.tfds_data_dir,
                           text_key=data.tfds_text_key, start=a, end=min(n, a + step),
                           bytes=int((min(n, a + step) - a) * per_doc))])
          for a in range(0, n, step)]


def _tfds_documents(part):
  source = sources.tfds_source(part["tfds"], part["split"], part["data_dir"])
  for i in range(part["start"], part["end"]):
    text = source[i][part["text_key"]]
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    if text.strip():
      yield text
