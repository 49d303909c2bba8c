"""Text sources, opened: what data/slices.py reads documents from, slice by slice.

- the embedded corpus (Jane Austen, shipped in lm_jax/data/corpus/), split
  into chapters; Persuasion is the held-out evaluation text;
- files, local or gs:// (lm_jax.paths), matched by a glob: .txt (optionally
  .gz) with blank-line-separated documents, or one document per line when the
  file has no blank line; .jsonl with a `text` field (data/slices.py reads
  them; fine-tuning's data/labelled.py reads its small files whole);
- any tensorflow-datasets text dataset by name, read through
  `tfds.data_source` (ArrayRecord, no TensorFlow needed).

A file that cannot be read or decoded is one UserError saying what it is.
"""
import codecs
import contextlib
import glob
import gzip
import os
import re
import zlib

from lm_jax import paths
from lm_jax.errors import UserError

CORPUS_DIR = os.path.join(os.path.dirname(__file__), "corpus")
EVAL_NOVELS = ("austen_persuasion",)
_CHAPTER = re.compile(r"^\s*chapter\b.*$", re.IGNORECASE | re.MULTILINE)


_PEEK_BYTES = 4096  # what check_inputs reads of each file


@contextlib.contextmanager
def open_bytes(path, buffer_bytes=1 << 20):
  """A file, local or remote, opened for reading bytes: gunzipped when its name ends
  in .gz (then only reading forward is cheap), else seekable. A remote file is read
  `buffer_bytes` at a time."""
  with paths.open_binary(path, buffer_bytes) as f:
    if path.endswith(".gz"):
      with gzip.GzipFile(fileobj=f, mode="rb") as unzipped:
        yield unzipped
    else:
      yield f


@contextlib.contextmanager
def reading(path):
  """Turns what can go wrong while reading `path` into one UserError naming it."""
  try:
    yield
  except IsADirectoryError:
    raise UserError(f"{path} is a directory, not a text file; make the data glob match files "
                    f"only (e.g. {path}/*.txt).") from None
  except gzip.BadGzipFile:
    raise UserError(f"{path} ends in .gz but is not gzip-compressed; rename it without .gz or "
                    "compress it with gzip.") from None
  except (EOFError, zlib.error) as e:  # a truncated or damaged gzip stream
    raise UserError(f"{path} is a damaged gzip file ({e}); re-create it or leave it out of "
                    "the data glob.") from None
  except OSError as e:
    raise UserError(f"{path} cannot be read ({e.strerror or e}); check the file and its "
                    "permissions.") from None


def _read_bytes(path, limit=-1):
  """The bytes of `path` (decompressed if .gz), at most `limit` of them."""
  with reading(path), open_bytes(path, limit if 0 < limit < 1 << 20 else 1 << 20) as f:
    return f.read(limit)


def decode(path, data, final=True, offset=0):
  """`data`, the bytes at `offset` of `path`, as UTF-8 text; `final=False` for a
  prefix that may end inside a character. Else one UserError saying what it is."""
  try:
    return codecs.getincrementaldecoder("utf-8")().decode(data, final)
  except UnicodeDecodeError as e:
    where = f"offset {offset + e.start}" + (" of the decompressed text" if path.endswith(".gz") else "")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
      what, fix = "UTF-16 text", "re-encode it as UTF-8, e.g. with iconv -f utf-16 -t utf-8"
    elif b"\0" in data[:8192]:
      what, fix = "a binary file, not text", "leave it out of the data glob"
    else:
      what = f"not UTF-8 text (byte 0x{data[e.start]:02x} at {where})"
      fix = "re-encode it as UTF-8, e.g. with iconv -f latin1 -t utf-8"
    raise UserError(f"{path} is {what}; {fix}.") from None


def read_text(path):
  """The text of a UTF-8 file, gunzipped if its name ends in .gz."""
  return decode(path, _read_bytes(path))


def _paragraphs(text):
  """Blank-line-separated blocks, each joined into one line."""
  return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def novel_documents(path):
  """One embedded novel (a .txt.gz of CORPUS_DIR), one document per chapter."""
  for chapter in _CHAPTER.split(read_text(path))[1:]:  # [0] is the title page
    doc = "\n".join(_paragraphs(chapter))
    if doc:
      yield doc


def embedded_documents(split):
  """The Austen novels, one document per chapter: split 'train' or 'eval'."""
  docs = []
  for path in sorted(glob.glob(os.path.join(CORPUS_DIR, "*.txt.gz"))):
    held_out = os.path.basename(path).split(".")[0] in EVAL_NOVELS
    if held_out == (split == "eval"):
      docs.extend(novel_documents(path))
  return docs


def matching_files(pattern, key="data.files"):
  """The files matching a glob (local or remote), sorted; one UserError when there is none."""
  return [path for path, _ in matching_sizes(pattern, key)]


def matching_sizes(pattern, key="data.files"):
  """(path, size) of the files matching a glob, sorted; one UserError when there is none."""
  found = paths.glob_sizes(pattern)
  if not found:
    raise UserError(f"No files match {key}={pattern!r}; check the path or glob.")
  return found


def _hide_gpus_from_tensorflow():
  """tfds may import TensorFlow; keep it off the accelerators JAX uses."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], "GPU")


def tfds_source(name, split, data_dir=None):
  """A tensorflow-datasets split as a random-access source of dicts (no TensorFlow)."""
  _hide_gpus_from_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None)
  except Exception as e:  # tfds raises many types: not found, not prepared, ...
    raise UserError(f"Could not open tensorflow-datasets {name!r} split {split!r} ({e}); "
                    "prepare it with `tfds build` or check data.tfds_name.") from None


def check_inputs(data):
  """Opens every file that data.files and data.eval_files name and decodes its
  first bytes, so that a missing or unreadable input is one UserError before
  any work (not after a tokenizer was trained). Reads a few KiB of each file.
  """
  if data.tfds_name or not data.files:  # no files are read then
    return
  for key in ("files", "eval_files"):
    for path in matching_files(data[key], f"data.{key}") if data[key] else []:
      decode(path, _read_bytes(path, _PEEK_BYTES), final=False)
