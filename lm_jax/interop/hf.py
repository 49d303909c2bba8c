"""The HuggingFace machinery every model family shares.

A family (interop/bert.py, ...) gives one `NameTable`: which of our
parameters is which tensor of the PyTorch state dict, and how its layout
differs. Everything else lives here once: scanned (stacked) or unrolled
layers, writing model.safetensors tensor by tensor, reading safetensors or
pytorch_model.bin without torch, and shape checks on import.
"""
import collections
import dataclasses
import json
import math
import os
import pickle
import re
import struct
import zipfile
import zlib

import jax
import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

from lm_jax.errors import UserError

SAFETENSORS_FILE = "model.safetensors"
PYTORCH_FILE = "pytorch_model.bin"
INDEX_SUFFIX = ".index.json"  # sharded checkpoints: {"weight_map": {name: file}}


# ---------------------------------------------------------------------------
# Name tables
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tensor:
  ours: str                 # dotted path in our params, e.g. "attention.self.query.kernel"
  theirs: str               # its name in the HF state dict
  transpose: bool = False   # our Linear kernel is [in, out]; torch's Linear weight is [out, in]


def linear(ours, theirs=None):
  theirs = theirs or ours
  return (Tensor(f"{ours}.kernel", f"{theirs}.weight", transpose=True),
          Tensor(f"{ours}.bias", f"{theirs}.bias"))


def layer_norm(ours, theirs=None):
  theirs = theirs or ours
  return (Tensor(f"{ours}.scale", f"{theirs}.weight"), Tensor(f"{ours}.bias", f"{theirs}.bias"))


def embedding(ours, theirs=None):
  return (Tensor(f"{ours}.embedding", f"{theirs or ours}.weight"),)


@dataclasses.dataclass(frozen=True)
class NameTable:
  """Our parameters <-> one family's HF state dict.

  Tensors of the repeated layer are named relative to one layer; layer i
  lives at `{layers}.{i}` on both sides (ours: or at `{layers}` with a
  leading layers axis, when scanned).
  """
  tensors: tuple           # Tensors outside the repeated layers
  layers: str              # where the layers are, in both name spaces
  layer_tensors: tuple     # Tensors of one layer
  base_prefix: str         # HF base_model_prefix + ".": absent from headless checkpoints
  heads: tuple = ()        # HF name prefixes a checkpoint may lack (task heads): kept as initialised
  ignored: tuple = ()      # regexes of HF names with nothing here (tied copies, buffers)
  our_layers: str = ""     # where the layers are in our params, when not at `layers`


@dataclasses.dataclass(frozen=True)
class Part:
  """One HF model directory a family is written as (most families: one, at
  the export directory itself; ELECTRA: the discriminator there and the
  generator in generator/)."""
  subdir: str              # "" = the directory itself
  table: NameTable
  num_layers: int
  hf_config: object        # hf_config(model_cfg, tokenizer, dtype) -> config.json dict
  shapes: dict = dataclasses.field(default_factory=dict)  # for check_config


def _path(dotted):
  """Dotted name -> keys into our params (digits index an nnx.List)."""
  return tuple(int(k) if k.isdigit() else k for k in dotted.split("."))


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One HF tensor and where it is in our params."""
  name: str
  path: tuple              # keys into our params dict
  layer: int | None        # index into the leading axis (scanned layers)
  transpose: bool


def _plan(table, num_layers, scanned):
  entries = [_Entry(t.theirs, _path(t.ours), None, t.transpose) for t in table.tensors]
  base = _path(table.our_layers or table.layers)
  for i in range(num_layers):
    for t in table.layer_tensors:
      path = base + (() if scanned else (i,)) + _path(t.ours)
      entries.append(_Entry(f"{table.layers}.{i}.{t.theirs}", path, i if scanned else None,
                            t.transpose))
  return entries


def _leaf(params, path):
  for key in path:
    params = params[key]
  return params


def _hf_shape(entry, leaf_shape):
  shape = leaf_shape[1:] if entry.layer is not None else leaf_shape
  return tuple(reversed(shape)) if entry.transpose else tuple(shape)


# ---------------------------------------------------------------------------
# Export: our params -> model.safetensors, one tensor at a time
# ---------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(ml_dtypes.bfloat16): "BF16",
                       np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
                       np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors, metadata=None):
  """Writes `tensors`, a list of (name, shape, dtype, fetch), to `path`.

  The header needs only names, shapes and dtypes, so each `fetch()` runs
  when its bytes are written: one tensor is in host memory at a time. The
  format: 8-byte little-endian header length, the JSON header (padded with
  spaces to 8 bytes), then the raw little-endian tensors in header order.
  Written to a temporary name and renamed, so no half-written file remains.
  """
  header, offset = {}, 0
  for name, shape, dtype, _ in tensors:
    size = math.prod(shape) * np.dtype(dtype).itemsize
    header[name] = dict(dtype=_SAFETENSORS_DTYPES[np.dtype(dtype)], shape=list(shape),
                        data_offsets=[offset, offset + size])
    offset += size
  header["__metadata__"] = dict(metadata or {"format": "pt"})
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name, shape, dtype, fetch in tensors:
      x = np.ascontiguousarray(fetch(), dtype=np.dtype(dtype).newbyteorder("<"))
      assert x.shape == tuple(shape), (name, x.shape, shape)
      f.write(x.reshape(-1).view(np.uint8).data)  # no copy: bfloat16 has no buffer format
  os.replace(tmp, path)


def export_params(path, table, params, num_layers, scanned, dtype):
  """Writes our `params` (a pure dict of arrays, any sharding) as the HF
  state dict of `table` in `dtype`, streaming: host memory holds one
  tensor beyond the params."""
  def fetch(entry):
    x = _leaf(params, entry.path)
    if entry.layer is not None:
      x = x[entry.layer]
    x = np.asarray(jax.device_get(x))
    return (x.T if entry.transpose else x).astype(dtype)

  tensors = [(e.name, _hf_shape(e, _leaf(params, e.path).shape), dtype, lambda e=e: fetch(e))
             for e in _plan(table, num_layers, scanned)]
  write_safetensors(path, tensors)


# ---------------------------------------------------------------------------
# Import: an HF directory's tensors, read lazily, without torch
# ---------------------------------------------------------------------------
#
# People import directories they downloaded, so nothing in the files is
# trusted: the pickle of pytorch_model.bin may build only tensor references,
# every tensor's dtype, shape, stride and offset are checked against its
# storage before a byte of it is read, a shard index may name only files of
# the directory itself, and each of these failures is one UserError sentence.

def _canonical(name):
  """Legacy TF-converted names (LayerNorm gamma/beta) as current HF names."""
  return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))


def _first_line(error):
  return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _damaged(what):
  return UserError(f"{what}; the file is damaged or was tampered with, so get it again from "
                   "its source.")


@dataclasses.dataclass(frozen=True)
class _Stored:
  """One tensor of a checkpoint file: its header, and how to read its data."""
  shape: tuple
  dtype: np.dtype
  load: object             # () -> np.ndarray


class CheckpointReader:
  """HF tensors by name: shapes from the file headers at once (no data is
  read), values as numpy arrays one tensor at a time.

  Reads model.safetensors or pytorch_model.bin, sharded (with their
  .index.json) or not.
  """

  def __init__(self, hf_dir):
    for base in (SAFETENSORS_FILE, PYTORCH_FILE):
      index = os.path.join(hf_dir, base + INDEX_SUFFIX)
      if os.path.exists(index):
        files = _shard_files(hf_dir, index)
        break
      if os.path.exists(os.path.join(hf_dir, base)):
        files = [base]
        break
    else:
      raise UserError(f"{hf_dir} has no {SAFETENSORS_FILE} or {PYTORCH_FILE}; give a "
                      "HuggingFace model directory (as written by save_pretrained).")
    tensors = {}
    for file in files:
      read = _read_safetensors if file.endswith(".safetensors") else _read_torch_zip
      tensors.update(read(os.path.join(hf_dir, file)))
    self._tensors = {_canonical(k): v for k, v in tensors.items()}

  def names(self):
    return set(self._tensors)

  def shape(self, name):
    return self._tensors[name].shape

  def __getitem__(self, name):
    return self._tensors[name].load()


def _shard_files(hf_dir, index):
  """The files a sharded checkpoint's index names: files of `hf_dir` itself."""
  try:
    with open(index, encoding="utf-8") as f:
      files = set(json.load(f)["weight_map"].values())
  except (ValueError, KeyError, TypeError, AttributeError):
    raise _damaged(f"{index} is not a shard index (a JSON object whose weight_map maps "
                   "tensor names to files)") from None
  for file in sorted(files, key=str):
    if (not isinstance(file, str) or file in ("", ".", "..") or "\0" in file
        or os.path.basename(file) != file):
      raise UserError(f"{index} names the shard {file!r}, which is not a file in {hf_dir}; "
                      "lm_jax reads shards only from the checkpoint's own directory.")
    if not os.path.isfile(os.path.join(hf_dir, file)):
      raise UserError(f"{index} names the shard {file}, which {hf_dir} lacks; download the "
                      "complete checkpoint.")
  return sorted(files)


# The safetensors dtypes numpy holds as they are; the library itself checks
# the header's JSON, each tensor's byte range against its shape, and the
# file's length, but hands over dtypes numpy cannot hold (F8_*, F4) or that
# are not weights (C64).
_SAFETENSORS_READ = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                     "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
                     "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path):
  try:
    with safe_open(path, framework="numpy") as f:
      headers = {n: (tuple(f.get_slice(n).get_shape()), f.get_slice(n).get_dtype())
                 for n in f.keys()}
  except (SafetensorError, OSError) as e:
    raise _damaged(f"{path} is not a readable safetensors file ({_first_line(e)})") from None
  for name, (_, dtype) in headers.items():
    if dtype not in _SAFETENSORS_READ:
      raise _damaged(f"Tensor {name} in {path} has dtype {dtype}, which lm_jax does not read")

  def load(name):
    with safe_open(path, framework="numpy") as f:
      return f.get_tensor(name)
  return {n: _Stored(shape, np.dtype(_SAFETENSORS_READ[dtype]), lambda n=n: load(n))
          for n, (shape, dtype) in headers.items()}


# torch storage class -> numpy dtype (torch.save's zip format).
_TORCH_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16,
                   "BFloat16Storage": ml_dtypes.bfloat16, "DoubleStorage": np.float64,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Refused(pickle.UnpicklingError):
  """The pickle asks for an object a tensor state dict does not hold."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """A torch storage class the pickle names (dtype None: not one we read).
  Not callable, so the pickle cannot construct anything with it."""
  name: str
  dtype: object


@dataclasses.dataclass(frozen=True)
class _Storage:
  type: object             # a _StorageType if the file is sound
  key: object              # its bytes are the zip member data/{key}
  numel: object


@dataclasses.dataclass
class _TorchTensor:
  storage: object          # everything as the pickle gave it: checked by _tensor_problem
  offset: object
  shape: object
  stride: object


# The pure-Python unpickler: the C one sizes its memo by the largest index
# the pickle names, which a four-byte pickle can set to gigabytes.
class _TorchUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Reads a torch.save state dict as _TorchTensor references; refuses any
  other object, so loading a checkpoint runs no code from it."""

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return lambda storage, offset, shape, stride, *_: _TorchTensor(storage, offset, shape, stride)
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return lambda data, *_: data
    if module == "torch" and name.endswith("Storage"):  # an unknown one is named per tensor
      return _StorageType(name, _TORCH_STORAGES.get(name))
    raise _Refused(f"{module}.{name} is not part of a tensor state dict")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise _Refused(f"a persistent id {str(pid)[:60]} is not a tensor storage")
    _, storage_type, key, _, numel = pid  # ("storage", storage type, key, location, numel)
    return _Storage(storage_type, key, numel)


def _tensor_problem(t, sizes, prefix, byteorder):
  """Why tensor `t` cannot be read from its storage, or None; `sizes` are
  the zip members' byte sizes (as the zip's directory gives them)."""
  s = t.storage
  if not (isinstance(s, _Storage) and isinstance(s.type, _StorageType) and isinstance(s.key, str)):
    return "is not a view of a storage of the file"
  if s.type.dtype is None:
    return f"has storage type torch.{s.type.name}, which lm_jax does not read"
  if byteorder not in (b"little", b"big"):
    return f"has byte order {byteorder[:20]!r}"
  nbytes = sizes.get(f"{prefix}data/{s.key}")
  if nbytes is None:
    return f"refers to storage data/{s.key}, which the file lacks"
  itemsize = np.dtype(s.type.dtype).itemsize
  if nbytes % itemsize:
    return f"has a {nbytes}-byte storage, not a whole number of {itemsize}-byte elements"
  numel = nbytes // itemsize
  if type(s.numel) is not int or s.numel != numel:
    return f"has a storage of {numel} elements where data.pkl says {s.numel}"
  ints = lambda v: isinstance(v, tuple) and all(type(i) is int for i in v)
  if not (type(t.offset) is int and ints(t.shape) and ints(t.stride)
          and len(t.shape) == len(t.stride)):
    return "has a malformed offset, shape or stride"
  layout = f"shape {list(t.shape)}, stride {list(t.stride)} and offset {t.offset}"
  if min((t.offset, *t.shape, *t.stride)) < 0:
    return f"has {layout}, which are not all non-negative"
  count = math.prod(t.shape)
  last = t.offset + sum((n - 1) * k for n, k in zip(t.shape, t.stride)) if count else t.offset - 1
  if count > numel or last >= numel:  # also bounds the copy by the file's size
    return f"has {layout}, which reach past the {numel} elements of its storage"
  return None


def _read_torch_zip(path):
  if not zipfile.is_zipfile(path):
    raise UserError(f"{path} is in torch's legacy (pre-1.6) format; re-save it with "
                    "save_pretrained (safetensors) first.")
  try:
    with zipfile.ZipFile(path) as z:
      infos = z.infolist()
      # torch.save stores its members uncompressed: so the sizes the zip's
      # directory gives are bytes of this file, which bound everything below.
      if (any(i.compress_type != zipfile.ZIP_STORED or i.compress_size != i.file_size
              for i in infos) or sum(i.file_size for i in infos) > os.path.getsize(path)):
        raise _damaged(f"{path} has compressed or oversized members, which torch.save does "
                       "not write")
      sizes = {i.filename: i.file_size for i in infos}
      pickles = [n for n in sizes if n.endswith("/data.pkl")]
      if len(pickles) != 1:
        raise _damaged(f"{path} holds {len(pickles)} data.pkl files where torch.save writes one")
      prefix = pickles[0][:-len("data.pkl")]
      byteorder = z.read(prefix + "byteorder") if prefix + "byteorder" in sizes else b"little"
      state = _TorchUnpickler(z.open(pickles[0])).load()
  except UserError:
    raise
  except _Refused as e:
    raise UserError(f"{path} holds more than tensors ({e}); re-save it with "
                    "save_pretrained.") from None
  except Exception as e:  # pylint: disable=broad-except (whatever malformed bytes raise)
    raise _damaged(f"{path} is not a readable torch.save file ({_first_line(e)})") from None
  if not isinstance(state, dict):
    raise _damaged(f"{path} holds a {type(state).__name__}, not a state dict")
  tensors, storages = {}, set()
  for name, t in state.items():
    if isinstance(t, _TorchTensor):
      problem = "has a name that is not a string" if not isinstance(name, str) else (
          _tensor_problem(t, sizes, prefix, byteorder))
      if problem:
        raise _damaged(f"Tensor {str(name)[:100]} in {path} {problem}")
      dtype = np.dtype(t.storage.type.dtype).newbyteorder("<" if byteorder == b"little" else ">")
      tensors[name] = _Stored(t.shape, dtype,
                              lambda t=t, dtype=dtype: _load_torch(path, prefix, t, dtype))
      storages.add(t.storage.key)
  # Tied weights are views of the same bytes, but tensors that claim far more
  # than the file stores (layer after layer over one storage) would make the
  # model cost far more than the file.
  claimed = sum(math.prod(t.shape) * t.dtype.itemsize for t in tensors.values())
  stored = sum(sizes[f"{prefix}data/{key}"] for key in storages)
  if claimed > 2 * stored:
    raise _damaged(f"The tensors of {path} claim {claimed} bytes but it stores {stored}, the "
                   "same bytes viewed many times over")
  return tensors


def _load_torch(path, prefix, t, dtype):
  """Tensor `t` (checked by _tensor_problem) as a numpy array."""
  try:
    with zipfile.ZipFile(path) as z:
      data = np.frombuffer(z.read(f"{prefix}data/{t.storage.key}"), dtype)
  except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
    raise _damaged(f"{path} cannot be read ({_first_line(e)})") from None
  if data.size != t.storage.numel:  # the zip's directory gave another size than its data
    raise _damaged(f"Storage data/{t.storage.key} of {path} is not the size its header gives")
  return np.lib.stride_tricks.as_strided(data[t.offset:], t.shape,
                                         [k * dtype.itemsize for k in t.stride]).copy()


def _stored_names(found, table):
  """The table's name -> the name in the files (a headless checkpoint, as of
  BertModel, lacks the base model prefix)."""
  if not any(n.startswith(table.base_prefix) for n in found):
    return {table.base_prefix + n: n for n in found}
  return {n: n for n in found}


def _zeros(leaf):
  return jax.device_put(np.zeros(leaf.shape, leaf.dtype), leaf.sharding)


def is_abstract(leaf):
  return isinstance(leaf, jax.ShapeDtypeStruct)


def import_params(hf_dir, table, init_params, num_layers, scanned):
  """Our params with every tensor `table` names taken from `hf_dir`.

  `init_params` give the expected shapes, dtypes and shardings: either
  freshly initialised arrays, whose values task heads the checkpoint lacks
  keep, or abstract leaves (jax.ShapeDtypeStruct with a sharding), where
  such heads become zeros. Leaves the table does not name stay as they are.
  Returns (params, notes): notes say which heads the checkpoint lacks and
  which of its tensors have no place here.
  """
  reader = CheckpointReader(hf_dir)
  found = reader.names()
  stored_name = _stored_names(found, table)
  by_leaf = collections.defaultdict(list)
  for e in _plan(table, num_layers, scanned):
    by_leaf[e.path].append(e)

  params = jax.tree.map(lambda x: x, init_params)  # a new tree, the same leaves
  kept, used = {}, set()
  for path, entries in by_leaf.items():
    target = _leaf(init_params, path)
    missing = [e.name for e in entries if e.name not in stored_name]
    if missing:
      head = next((h for h in table.heads if missing[0].startswith(h)), None)
      if head is None or len(missing) < len(entries):
        raise UserError(f"{hf_dir} has no tensor {missing[0]}, which this model needs; "
                        "is its config.json the one of these weights?")
      kept[head] = is_abstract(target)
      if is_abstract(target):
        _set_leaf(params, path, _zeros(target))
      continue
    for e in entries:  # every shape from the headers first: a wrong one reads no data
      have, want = reader.shape(stored_name[e.name]), _hf_shape(e, target.shape)
      if tuple(have) != want:
        raise UserError(f"{e.name} in {hf_dir} has shape {list(have)} but its config.json "
                        f"implies {list(want)}; the weights and config.json disagree.")
    arrays = []
    for e in entries:
      x = reader[stored_name[e.name]]
      arrays.append(x.T if e.transpose else x)
      used.add(stored_name[e.name])
    value = np.stack(arrays) if entries[0].layer is not None else arrays[0]  # scanned: [layers, ...]
    _set_leaf(params, path, jax.device_put(value.astype(target.dtype), target.sharding))

  table_name = {v: k for k, v in stored_name.items()}
  ignored = sorted(n for n in found - used
                   if not any(re.fullmatch(p, table_name[n]) for p in table.ignored))
  notes = [f"{hf_dir} has no {h}* tensors; "
           + ("they are zeros." if zeroed else "they keep their fresh initialisation.")
           for h, zeroed in sorted(kept.items())]
  if ignored:
    notes.append(f"{len(ignored)} tensors of {hf_dir} have no place in this model and are "
                 f"ignored (e.g. {ignored[0]}).")
  return params, notes


def zero_abstract(params, table, num_layers, scanned):
  """`params` with the abstract leaves `table` names as zeros (a part the
  checkpoint lacks, imported onto an abstract template)."""
  params = jax.tree.map(lambda x: x, params)
  for e in _plan(table, num_layers, scanned):
    if is_abstract(_leaf(params, e.path)):
      _set_leaf(params, e.path, _zeros(_leaf(params, e.path)))
  return params


def _set_leaf(params, path, value):
  for key in path[:-1]:
    params = params[key]
  params[path[-1]] = value


# ---------------------------------------------------------------------------
# config.json against the checkpoint, before any model is built
# ---------------------------------------------------------------------------

def embedding_shapes(base, cfg, width):
  """{HF name: shape} of a BERT-style model's three embedding tables."""
  e = f"{base}embeddings."
  return {e + "word_embeddings.weight": (cfg.vocab_size, width),
          e + "position_embeddings.weight": (cfg.max_position_embeddings, width),
          e + "token_type_embeddings.weight": (cfg.type_vocab_size, width)}


def layer_shapes(layer, hidden, intermediate):
  """{HF name: shape} of the largest tensors of a BERT-style layer."""
  return {f"{layer}attention.self.query.weight": (hidden, hidden),
          f"{layer}intermediate.dense.weight": (intermediate, hidden)}


def check_config(hf_dir, reader, table, num_layers, shapes):
  """Refuses a config.json that disagrees with the checkpoint's headers.

  Building a model from config.json costs what config.json says, so the
  sizes that decide that cost are compared with the tensors first: the
  layer count (and that every layer has layer 0's shapes) and `shapes`,
  {HF name: shape config.json implies} of the tensors that carry the
  vocabulary, position, width and feed-forward sizes. So a model costs at
  most a few times what the checkpoint's tensors hold.
  """
  stored = _stored_names(reader.names(), table)
  if table.layer_tensors:
    pattern = re.compile(re.escape(table.layers) + r"\.(\d+)\.(.*)")
    layers = collections.defaultdict(dict)  # layer -> {name in the layer: shape}
    for name, file_name in stored.items():
      m = pattern.fullmatch(name)
      if m:
        layers[int(m[1])][m[2]] = tuple(reader.shape(file_name))
    held = len(layers)
    if sorted(layers) != list(range(held)):
      gap = min(set(range(held)) - set(layers))
      raise _damaged(f"The checkpoint in {hf_dir} holds {held} layers but not layer {gap}")
    if held != num_layers:
      raise UserError(f"{hf_dir}/config.json says {num_layers} layers; the checkpoint holds "
                      f"{held}, so use the config.json saved with these weights.")
    for i, layer in layers.items():
      odd = next((n for n in sorted(layer.keys() | layers[0].keys())
                  if layer.get(n) != layers[0].get(n)), None)
      if odd:
        raise _damaged(f"Layer {i} of the checkpoint in {hf_dir} differs from layer 0 in "
                       f"{table.layers}.{i}.{odd}")
  for name, want in shapes.items():
    if name not in stored:
      raise UserError(f"{hf_dir} has no tensor {name}, which this model needs; is its "
                      "config.json the one of these weights?")
    have = tuple(reader.shape(stored[name]))
    if have != tuple(want):
      raise UserError(f"{name} in {hf_dir} has shape {list(have)} but its config.json "
                      f"implies {list(want)}; the weights and config.json disagree.")


def read_config(hf_dir):
  """The HF config.json of `hf_dir` as a dict."""
  path = os.path.join(hf_dir, "config.json")
  if not os.path.exists(path):
    raise UserError(f"{hf_dir} has no config.json; give a HuggingFace model directory "
                    "(as written by save_pretrained or lm_jax.export).")
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except ValueError as e:
    raise _damaged(f"{path} is not valid JSON ({_first_line(e)})") from None
  if not isinstance(config, dict):
    raise _damaged(f"{path} holds a JSON {type(config).__name__}, not an object")
  return config


def take_config(hf_config, path, keys, fixed, model_name):
  """{key: value} of `keys` from an HF config dict, after checking that the
  options in `fixed` (those lm_jax implements one way only) have its value."""
  for key, ours in fixed.items():
    theirs = hf_config.get(key, ours)
    if theirs != ours:
      raise UserError(f"{path}/config.json has {key}={theirs!r}, but lm_jax's {model_name} "
                      f"implements only {key}={ours!r}.")
  absent = [k for k in keys if k not in hf_config]
  if absent:
    raise UserError(f"{path}/config.json lacks {absent[0]}; it is not a complete "
                    f"{model_name} config.")
  return {k: hf_config[k] for k in keys}
