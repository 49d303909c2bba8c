"""The one file-system layer: every path a user can name may be local or gs://.

Local paths go through `os`; remote ones (gs://, any fsspec URL) through
etils.epath, with gcsfs underneath (EPATH_USE_TF=false keeps TensorFlow out),
or through fsspec itself where epath cannot (a recursive glob, a ranged read).
Orbax, tensorstore and ArrayRecord speak gs:// themselves and get the path
as it is. Object stores have no rename and no append, so nothing here needs
them: a remote file is written whole in one call (an object appears
complete or not at all), and a directory meant for tools that only read
local files (sentencepiece, safetensors, HF tokenizers) is copied to or
from a local temporary directory.
"""
import glob as glob_lib
import io
import logging
import os
import shutil
import tempfile
import uuid

from etils import epath
import fsspec

os.environ.setdefault("EPATH_USE_TF", "false")  # gs:// through gcsfs, never through TensorFlow
logging.getLogger("gcsfs").setLevel(logging.ERROR)  # it warns on every call without credentials


def is_remote(path):
  return "://" in str(path)


def absolute(path):
  """An absolute local path, or the remote URL as it is."""
  return str(path) if is_remote(path) else os.path.abspath(os.path.expanduser(str(path)))


def join(path, *parts):
  return str(epath.Path(path).joinpath(*parts)) if is_remote(path) else os.path.join(path, *parts)


def exists(path):
  return epath.Path(path).exists() if is_remote(path) else os.path.exists(path)


def isdir(path):
  return epath.Path(path).is_dir() if is_remote(path) else os.path.isdir(path)


def listdir(path):
  """Names in a directory ([] when it does not exist)."""
  if not isdir(path):
    return []
  return sorted(p.name for p in epath.Path(path).iterdir()) if is_remote(path) else sorted(
      os.listdir(path))


def glob_sizes(pattern):
  """(path, size in bytes) of the files matching a glob, sorted. A remote glob is one
  listing of the bucket prefix, sizes included (fsspec, as under epath, whose glob
  refuses `**`): no request per file."""
  if not is_remote(pattern):
    found = sorted(glob_lib.glob(os.path.expanduser(pattern), recursive=True))
    return [(p, os.path.getsize(p) if os.path.isfile(p) else 0) for p in found]
  fs, path = fsspec.core.url_to_fs(pattern)
  found = fs.glob(path, detail=True)
  return sorted((fs.unstrip_protocol(p), info["size"]) for p, info in found.items()
                if info["type"] == "file")


def open_binary(path, buffer_bytes=1 << 20):
  """A file opened for reading bytes, seekable. A remote one is read `buffer_bytes` at
  a time, each one ranged request (fsspec's own readline would read a whole block
  per line, and its read-ahead MiBs for a peek of a few KiB)."""
  if not is_remote(path):
    return open(path, "rb")  # pylint: disable=consider-using-with
  fs, name = fsspec.core.url_to_fs(path)
  raw = fs.open(name, "rb", block_size=buffer_bytes, cache_type="none")
  return io.BufferedReader(raw, buffer_size=buffer_bytes)


def makedirs(path):
  if is_remote(path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def read_text(path):
  return read_bytes(path).decode("utf-8")


def read_bytes(path):
  if is_remote(path):
    return epath.Path(path).read_bytes()
  with open(path, "rb") as f:
    return f.read()


def write_text(path, text):
  """Writes a whole file so that a reader sees the old or the new one, never half:
  locally through a temporary file and a rename, remotely in one upload."""
  if is_remote(path):
    epath.Path(path).write_text(text)
    return
  tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"  # unique: two writers never share one
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def remove(path):
  if is_remote(path):
    epath.Path(path).unlink(missing_ok=True)
  elif os.path.exists(path):
    os.remove(path)


def rmtree(path):
  if is_remote(path):
    if exists(path):
      epath.Path(path).rmtree()
  else:
    shutil.rmtree(path, ignore_errors=True)


def copy_file(source, destination):
  """Copies one file from anywhere to anywhere."""
  if is_remote(source) or is_remote(destination):
    epath.Path(destination).write_bytes(read_bytes(source))
  else:
    shutil.copyfile(source, destination)


def copytree(source, destination):
  """Copies a directory and its subdirectories from anywhere to anywhere."""
  makedirs(destination)
  for name in listdir(source):
    src, dst = join(source, name), join(destination, name)
    (copytree if isdir(src) else copy_file)(src, dst)


def local_copy(path):
  """`path` itself when local; else a local copy of the remote directory, for readers of
  local files only (sentencepiece, safetensors). The copy lives as long as the process
  (a tokenizer keeps reading its files), in the system's temporary directory."""
  if not is_remote(path):
    return path
  local = tempfile.mkdtemp(prefix="lm_jax_copy_")
  copytree(path, local)
  return local

