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

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open

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

def _canonical(name):
  """Legacy TF-converted names (LayerNorm gamma/beta) as current HF names."""
  return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))


class CheckpointReader:
  """HF tensors by name as numpy arrays, read one at a time.

  Reads model.safetensors or pytorch_model.bin, sharded (with their
  .index.json) or not.
  """

  def __init__(self, hf_dir):
    self._loaders = {}  # name -> callable returning the array
    for base in (SAFETENSORS_FILE, PYTORCH_FILE):
      index = os.path.join(hf_dir, base + INDEX_SUFFIX)
      if os.path.exists(index):
        with open(index) as f:
          files = sorted(set(json.load(f)["weight_map"].values()))
      elif os.path.exists(os.path.join(hf_dir, base)):
        files = [base]
      else:
        continue
      for file in files:
        read = _read_safetensors if file.endswith(".safetensors") else _read_torch_zip
        self._loaders.update(read(os.path.join(hf_dir, file)))
      break
    else:
      raise UserError(f"{hf_dir} has no {SAFETENSORS_FILE} or {PYTORCH_FILE}; give a "
                      "HuggingFace model directory (as written by save_pretrained).")
    self._loaders = {_canonical(k): v for k, v in self._loaders.items()}

  def names(self):
    return set(self._loaders)

  def __getitem__(self, name):
    return self._loaders[name]()


def _read_safetensors(path):
  with safe_open(path, framework="numpy") as f:
    names = list(f.keys())

  def load(name):
    with safe_open(path, framework="numpy") as f:
      return f.get_tensor(name)
  return {n: (lambda n=n: load(n)) for n in names}


# torch storage class -> numpy dtype (torch.save's zip format).
_TORCH_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16,
                   "BFloat16Storage": ml_dtypes.bfloat16, "DoubleStorage": np.float64,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


@dataclasses.dataclass
class _TorchTensor:
  storage: tuple   # (key, dtype)
  offset: int
  shape: tuple
  stride: tuple


class _TorchUnpickler(pickle.Unpickler):
  """Reads a torch.save state dict as _TorchTensor references; refuses any
  other object, so loading a checkpoint runs no code from it."""

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return lambda storage, offset, shape, stride, *_: _TorchTensor(storage, offset, shape, stride)
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return lambda data, *_: data
    if module == "torch" and name in _TORCH_STORAGES:
      return np.dtype(_TORCH_STORAGES[name])
    raise pickle.UnpicklingError(f"{module}.{name} is not part of a tensor state dict")

  def persistent_load(self, pid):
    _, dtype, key, _, _ = pid  # ("storage", storage type, key, location, numel)
    return key, dtype


def _read_torch_zip(path):
  if not zipfile.is_zipfile(path):
    raise UserError(f"{path} is in torch's legacy (pre-1.6) format; re-save it with "
                    "save_pretrained (safetensors) first.")
  with zipfile.ZipFile(path) as z:
    pickle_name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    prefix = pickle_name[:-len("data.pkl")]
    try:
      state = _TorchUnpickler(z.open(pickle_name)).load()
    except pickle.UnpicklingError as e:
      raise UserError(f"{path} holds more than tensors ({e}); re-save it with save_pretrained.") from None

  def load(t):
    (key, dtype) = t.storage
    with zipfile.ZipFile(path) as z:
      data = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype)
    itemsize = data.dtype.itemsize
    return np.lib.stride_tricks.as_strided(data[t.offset:], t.shape,
                                           [s * itemsize for s in t.stride]).copy()
  return {n: (lambda t=t: load(t)) for n, t in state.items() if isinstance(t, _TorchTensor)}


def import_params(hf_dir, table, init_params, num_layers, scanned):
  """Our params with every tensor `table` names taken from `hf_dir`.

  `init_params` (freshly initialised, with the shardings to use) give the
  expected shapes and the values of task heads the checkpoint lacks.
  Returns (params, notes): notes say which heads were kept as initialised
  and which checkpoint tensors have no place here.
  """
  reader = CheckpointReader(hf_dir)
  found = reader.names()
  stored_name = {n: n for n in found}  # the table's name -> the name in the files
  if not any(n.startswith(table.base_prefix) for n in found):  # a headless (base model) checkpoint
    stored_name = {table.base_prefix + n: n for n in found}
  by_leaf = collections.defaultdict(list)
  for e in _plan(table, num_layers, scanned):
    by_leaf[e.path].append(e)

  params = jax.tree.map(lambda x: x, init_params)  # a new tree, the same leaves
  kept, used = set(), set()
  for path, entries in by_leaf.items():
    target = _leaf(init_params, path)
    missing = [e.name for e in entries if e.name not in stored_name]
    if missing:
      head = next((h for h in table.heads if missing[0].startswith(h)), None)
      if head is None or len(missing) < len(entries):
        raise UserError(f"{hf_dir} has no tensor {missing[0]}, which this model needs; "
                        "is its config.json the one of these weights?")
      kept.add(head)
      continue
    arrays = []
    for e in entries:
      x = reader[stored_name[e.name]]
      want = _hf_shape(e, target.shape)
      if tuple(x.shape) != want:
        raise UserError(f"{e.name} in {hf_dir} has shape {list(x.shape)} but its config.json "
                        f"implies {list(want)}; the weights and config.json disagree.")
      arrays.append(x.T if e.transpose else x)
      used.add(stored_name[e.name])
    value = np.stack(arrays) if entries[0].layer is not None else arrays[0]  # scanned: [layers, ...]
    _set_leaf(params, path, jax.device_put(value.astype(target.dtype), target.sharding))

  table_name = {v: k for k, v in stored_name.items()}
  ignored = sorted(n for n in found - used
                   if not any(re.fullmatch(p, table_name[n]) for p in table.ignored))
  notes = [f"{hf_dir} has no {h}* tensors; they keep their fresh initialisation." for h in sorted(kept)]
  if ignored:
    notes.append(f"{len(ignored)} tensors of {hf_dir} have no place in this model and are "
                 f"ignored (e.g. {ignored[0]}).")
  return params, notes


def _set_leaf(params, path, value):
  for key in path[:-1]:
    params = params[key]
  params[path[-1]] = value


def read_config(hf_dir):
  """The HF config.json of `hf_dir` as a dict."""
  path = os.path.join(hf_dir, "config.json")
  if not os.path.exists(path):
    raise UserError(f"{hf_dir} has no config.json; give a HuggingFace model directory "
                    "(as written by save_pretrained or lm_jax.export).")
  with open(path) as f:
    return json.load(f)


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
