"""Untrusted HF checkpoints (issue #18): a damaged or crafted directory is
one sentence and a non-zero exit within seconds, never a crash, a hang or
code run.

A tiny random BERT is saved offline by transformers + torch (a torch.save
pytorch_model.bin, a model.safetensors, config.json, vocab.txt), then the
bytes are tampered with. All cases run in one subprocess (one jax import),
each `lm_jax.load` in a forked child of it, so a segfault or hang in one
case shows as that case's signal or timeout and hides no other.
"""
import collections
import io
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import types
import zipfile

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from conftest import REPO, run_main

LAYER = "bert.encoder.layer.0."
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
CASE_SECONDS = 60


# ---------------------------------------------------------------------------
# Building the files, then tampering with them
# ---------------------------------------------------------------------------

def save_bert(out, file):
  """A random tiny BertForMaskedLM in `out`: pytorch_model.bin (file="bin")
  or model.safetensors, with config.json and a vocab.txt of its 100 rows."""
  import torch
  import transformers
  torch.manual_seed(0)
  config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=37,
                                   max_position_embeddings=64)
  model = transformers.BertForMaskedLM(config)
  if file == "bin":  # transformers 5 writes only safetensors; torch.save is the .bin format
    config.save_pretrained(out)
    torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
  else:
    model.save_pretrained(out)
  with open(os.path.join(out, "vocab.txt"), "w") as f:
    f.write("".join(piece + "\n" for piece in VOCAB))


class _Ref:
  """A tensor of data.pkl as the test reads and rewrites it."""

  def __init__(self, storage, offset, shape, stride, *_):
    self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

  def __reduce__(self):
    import torch._utils
    return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride,
                                              False, collections.OrderedDict())


_Storage = collections.namedtuple("_Storage", "kind type key location numel")


class _Reader(pickle.Unpickler):
  def find_class(self, module, name):
    if name == "OrderedDict":
      return collections.OrderedDict
    if name == "_rebuild_tensor_v2":
      return _Ref
    assert name.endswith("Storage"), (module, name)
    return name

  def persistent_load(self, pid):
    return _Storage(*pid)


class _Writer(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      import torch
      return ("storage", getattr(torch, obj.type), obj.key, obj.location, obj.numel)
    return None


class _System:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return os.system, (self.command,)


def tampered(src, dst, edit_state=None, edit_pickle=None, edit_members=None,
             compression=zipfile.ZIP_STORED):
  """A copy of `src` whose pytorch_model.bin has data.pkl's tensors (name ->
  _Ref), data.pkl's bytes or the zip's members ({name: bytes}) changed."""
  shutil.copytree(src, dst)
  path = os.path.join(dst, "pytorch_model.bin")
  with zipfile.ZipFile(path) as z:
    members = {name: z.read(name) for name in z.namelist()}
  pkl = next(n for n in members if n.endswith("/data.pkl"))
  if edit_state:
    state = _Reader(io.BytesIO(members[pkl])).load()
    edit_state(state)
    buf = io.BytesIO()
    _Writer(buf, protocol=2).dump(state)
    members[pkl] = buf.getvalue()
  if edit_pickle:
    members[pkl] = edit_pickle(members[pkl])
  if edit_members:
    edit_members(members)
  with zipfile.ZipFile(path, "w", compression) as z:
    for name, data in members.items():
      z.writestr(name, data)
  return dst


def with_config(src, dst, **changes):
  shutil.copytree(src, dst)
  with open(os.path.join(dst, "config.json")) as f:
    config = json.load(f)
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump({**config, **changes}, f)
  return dst


def safetensors_parts(path):
  with open(path, "rb") as f:
    raw = f.read()
  n = struct.unpack("<Q", raw[:8])[0]
  return json.loads(raw[8:8 + n]), raw[8 + n:]


def with_header(src, dst, name, **changes):
  """A copy of `src` whose model.safetensors header has `changes` for `name`."""
  shutil.copytree(src, dst)
  path = os.path.join(dst, "model.safetensors")
  header, body = safetensors_parts(path)
  header[name].update(changes)
  blob = json.dumps(header).encode()
  blob += b" " * (-len(blob) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)) + blob + body)
  return dst


def sharded(src, dst, shard_name, move_to=None):
  """A copy of `src` as a sharded checkpoint whose index names `shard_name`;
  model.safetensors moves to `move_to` (relative to the copy), or goes."""
  shutil.copytree(src, dst)
  path = os.path.join(dst, "model.safetensors")
  header, _ = safetensors_parts(path)
  weight_map = {name: shard_name for name in header if name != "__metadata__"}
  with open(path + ".index.json", "w") as f:
    json.dump(dict(metadata={}, weight_map=weight_map), f)
  if move_to:
    os.replace(path, os.path.normpath(os.path.join(dst, move_to)))
  else:
    os.remove(path)
  return dst


def truncate(path, keep):
  with open(path, "rb") as f:
    raw = f.read()
  with open(path, "wb") as f:
    f.write(raw[:int(len(raw) * keep)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """.cases: {case: (directory, what its one sentence says; None: it loads)},
  .marker: the file the os.system pickle would create, .safetensors: the
  sound safetensors directory."""
  root = tmp_path_factory.mktemp("security")
  base_bin, base_st = str(root / "bin"), str(root / "st")
  save_bert(base_bin, "bin")
  save_bert(base_st, "safetensors")
  d = lambda name: str(root / name)
  marker = d("pwned")
  bias = LAYER + "intermediate.dense.bias"

  def set_attr(name, **changes):
    return lambda state: [setattr(state[name], k, v) for k, v in changes.items()]

  def fifty_layers(state):  # layers 1..49 as views of layer 0's storages
    for name in [n for n in state if n.startswith(LAYER)]:
      for i in range(1, 50):
        state[name.replace(".0.", f".{i}.", 1)] = state[name]

  def largest_storage_halved(members):
    key = max((n for n in members if "/data/" in n), key=lambda n: len(members[n]))
    members[key] = members[key][:len(members[key]) // 2]

  def bad_tokenizer(dst):
    shutil.copytree(base_bin, dst)
    with open(os.path.join(dst, "tokenizer.json"), "w") as f:
      f.write('{"version": "1.0", "model": ')
    return dst

  def big_vocab(dst):
    shutil.copytree(base_bin, dst)
    with open(os.path.join(dst, "vocab.txt"), "a") as f:
      f.write("".join(f"x{i}\n" for i in range(5000)))
    return dst

  def cut_safetensors(dst):
    shutil.copytree(base_st, dst)
    truncate(os.path.join(dst, "model.safetensors"), 0.6)
    return dst

  os.makedirs(d("outside"))
  cases = {
      # A sound file, read and rewritten by the helper, loads (the safetensors
      # one is loaded by the abstract-template test below).
      "bin_rewritten": (tampered(base_bin, d("bin_rewritten"), edit_state=lambda s: None), None),
      # pytorch_model.bin
      "os_system": (tampered(base_bin, d("os_system"), edit_pickle=lambda _: pickle.dumps(
          _System(f"touch {marker}"), protocol=2)),
                    "posix.system is not part of a tensor state dict"),
      "oversized_shape": (tampered(base_bin, d("oversized_shape"),
                                   set_attr(bias, shape=(268435456,))),
                          "which reach past the 37 elements of its storage"),
      "offset_past_end": (tampered(base_bin, d("offset_past_end"), set_attr(
          "bert.embeddings.LayerNorm.weight", offset=10**6)), "which reach past the 32 elements"),
      "negative_stride": (tampered(base_bin, d("negative_stride"), set_attr(bias, stride=(-1,))),
                          "which are not all non-negative"),
      "wrong_dtype": (tampered(base_bin, d("wrong_dtype"), edit_pickle=lambda b: b.replace(
          b"FloatStorage", b"FlaotStorage")), "has storage type torch.FlaotStorage"),
      # LONG_BINPUT 2**31 - 1: C's unpickler would size its memo to that
      "memo_bomb": (tampered(base_bin, d("memo_bomb"), edit_pickle=lambda _: (
          b"\x80\x02N\x72\xff\xff\xff\x7f.")), "holds a NoneType, not a state dict"),
      "compressed": (tampered(base_bin, d("compressed"), compression=zipfile.ZIP_DEFLATED),
                     "has compressed or oversized members"),
      "truncated_storage": (tampered(base_bin, d("truncated_storage"),
                                     edit_members=largest_storage_halved),
                            "has a storage of 1600 elements where data.pkl says 3200"),
      "layers_over_one_storage": (with_config(
          tampered(base_bin, d("shared_storage"), fifty_layers), d("layers_over_one_storage"),
          num_hidden_layers=50), "the same bytes viewed many times over"),
      # config.json and tokenizer files against the tensors
      "layer_bomb": (with_config(base_bin, d("layer_bomb"), num_hidden_layers=20000,
                                 intermediate_size=65536),
                     "config.json says 20000 layers; the checkpoint holds 1"),
      "vocabulary_bomb": (with_config(base_st, d("vocabulary_bomb"), vocab_size=50_000_000),
                          "has shape [100, 32] but its config.json implies [50000000, 32]"),
      "width_as_string": (with_config(base_st, d("width_as_string"), hidden_size="32"),
                          "has hidden_size='32', not the int lm_jax expects"),
      "tokenizer_bomb": (big_vocab(d("tokenizer_bomb")),
                         "has 5100 pieces but the checkpoint's embedding matrix only 100 rows"),
      "tokenizer_invalid": (bad_tokenizer(d("tokenizer_invalid")),
                            "is not a tokenizer the tokenizers library reads"),
      # model.safetensors and shard indexes
      "safetensors_truncated": (cut_safetensors(d("safetensors_truncated")),
                                "is not a readable safetensors file"),
      "safetensors_f8_dtype": (with_header(base_st, d("safetensors_f8_dtype"),
                                           "bert.embeddings.LayerNorm.bias", dtype="F8_E4M3",
                                           shape=[128]),
                               "has dtype F8_E4M3, which lm_jax does not read"),
      "safetensors_shape": (with_header(base_st, d("safetensors_shape"),
                                        "bert.embeddings.LayerNorm.bias", shape=[268435456]),
                            "invalid shape, data type, or offset"),
      "shard_outside": (sharded(base_st, d("shard_outside"), "../outside/model.safetensors",
                                move_to="../outside/model.safetensors"),
                        "names the shard '../outside/model.safetensors', which is not a file in"),
      "shard_missing": (sharded(base_st, d("shard_missing"), "model-00001-of-00002.safetensors"),
                        "names the shard model-00001-of-00002.safetensors, which"),
  }
  return types.SimpleNamespace(cases=cases, marker=marker, safetensors=base_st)


# ---------------------------------------------------------------------------
# The runner: `python tests/test_security.py DIR...` loads each in a fork
# ---------------------------------------------------------------------------

def _run_forked(directory, timeout):
  """(exit status or -signal or "timeout", seconds, stderr) of lm_jax.load(directory)."""
  err = tempfile.TemporaryFile()
  start = time.time()
  pid = os.fork()
  if pid == 0:  # the child: the CLI's contract, an error line and exit 2
    os.dup2(err.fileno(), 2)
    code = 1
    try:
      import lm_jax
      from lm_jax.errors import UserError
      try:
        lm_jax.load(directory)
        code = 0
      except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = 2
    except BaseException:  # pylint: disable=broad-except
      import traceback
      traceback.print_exc()
    finally:
      sys.stderr.flush()
      os._exit(code)
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      break
    if time.time() - start > timeout:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      status = "timeout"
      break
    time.sleep(0.02)
  seconds = time.time() - start
  err.seek(0)
  if status != "timeout":
    status = os.waitstatus_to_exitcode(status)
  return status, seconds, err.read().decode(errors="replace")


def main(directories):
  import lm_jax
  from lm_jax.errors import UserError
  try:  # imports what lm_jax.load needs once, before the forks (no jax backend starts)
    lm_jax.load(os.path.join(directories[0], "no such run"))
  except UserError:
    pass
  for directory in directories:
    status, seconds, stderr = _run_forked(directory, CASE_SECONDS)
    print(json.dumps(dict(directory=directory, status=status, seconds=seconds, stderr=stderr)),
          flush=True)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def one_sentence(stderr):
  """The sentence of the one `error:` line of `stderr`, else None."""
  lines = [line for line in stderr.splitlines() if line.startswith("error:")]
  if "Traceback" in stderr or len(lines) != 1:
    return None
  sentence = lines[0][len("error: "):]
  one = sentence.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", sentence[:-1])
  return sentence if one else None


def test_each_attack_is_one_sentence_and_exit_2_within_seconds(built):
  cases = built.cases
  names = list(cases)
  result = subprocess.run([sys.executable, os.path.abspath(__file__),
                           *(cases[n][0] for n in names)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                          timeout=CASE_SECONDS * 3 + 120)
  assert result.returncode == 0, result.stderr[-3000:]
  outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert len(outcomes) == len(names), result.stdout[-3000:] + result.stderr[-3000:]
  problems = []
  for name, outcome in zip(names, outcomes):
    expected = cases[name][1]
    status, stderr = outcome["status"], outcome["stderr"]
    sentence = one_sentence(stderr)
    if expected is None:
      ok = status == 0 and "Traceback" not in stderr
    else:  # seconds: the layer bomb ran past two minutes before the checks
      ok = status == 2 and sentence is not None and expected in sentence and outcome["seconds"] < 30
    if not ok:
      problems.append(f"{name}: status {status} after {outcome['seconds']:.1f}s: {stderr[-1500:]}")
  assert not problems, "\n".join(problems)
  assert not os.path.exists(built.marker), "the os.system pickle ran"


def test_training_from_a_layer_bomb_refuses_in_seconds(built, tmp_path):
  """--config.init.from_hf checks config.json before any model is built."""
  result = run_main(str(tmp_path / "run"), f"--config.init.from_hf={built.cases['layer_bomb'][0]}",
                    timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  sentence = one_sentence(result.stderr)
  assert sentence and "config.json says 20000 layers; the checkpoint holds 1" in sentence, (
      result.stderr[-3000:])


# ---------------------------------------------------------------------------
# interop.load_params onto an abstract template (no random initialisation)
# ---------------------------------------------------------------------------

def abstract_params(model_cfg):
  """The model's parameters as jax.ShapeDtypeStruct leaves with a sharding."""
  import jax
  from flax import nnx
  from lm_jax import families
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shapes = jax.eval_shape(lambda: nnx.to_pure_dict(nnx.state(
      families.build_model(model_cfg, rngs=nnx.Rngs(0)))))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def test_abstract_template_takes_every_leaf_from_the_checkpoint(built, capsys):
  import jax
  import numpy as np
  from safetensors.numpy import load_file
  from lm_jax import interop
  from lm_jax.errors import UserError
  hf_dir = built.safetensors
  model_cfg = interop.model_config(hf_dir)
  template = abstract_params(model_cfg)
  params = interop.load_params(hf_dir, model_cfg, template)
  state = load_file(os.path.join(hf_dir, "model.safetensors"))
  kernel = params["bert"]["encoder"]["layer"][0]["intermediate"]["dense"]["kernel"]
  np.testing.assert_array_equal(kernel, state[LAYER + "intermediate.dense.weight"].T)
  # BertForMaskedLM has no pooler and no NSP head: tolerated, as zeros, with the note.
  assert not params["bert"]["pooler"]["dense"]["kernel"].any()
  assert not params["cls"]["seq_relationship"]["bias"].any()
  out = capsys.readouterr().out
  assert "has no bert.pooler.* tensors; they are zeros." in out, out
  leaves = jax.tree.leaves(params)
  sharding = template["bert"]["pooler"]["dense"]["bias"].sharding
  assert all(isinstance(x, jax.Array) and x.sharding == sharding for x in leaves)

  template["bert"]["extra"] = {"kernel": jax.ShapeDtypeStruct((2, 2), np.float32)}
  with pytest.raises(UserError, match="has no tensor for the parameter bert.extra.kernel"):
    interop.load_params(hf_dir, model_cfg, template)


def test_abstract_template_zeros_a_missing_electra_generator(tmp_path, capsys):
  import jax
  import torch
  import transformers
  from lm_jax import interop
  config = transformers.ElectraConfig(vocab_size=100, embedding_size=16, hidden_size=32,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=37, max_position_embeddings=64)
  torch.manual_seed(0)
  transformers.ElectraForPreTraining(config).save_pretrained(tmp_path)  # no generator/
  model_cfg = interop.model_config(str(tmp_path))
  params = interop.load_params(str(tmp_path), model_cfg, abstract_params(model_cfg))
  assert f"{tmp_path} has no generator/ model; its parameters are zeros." in capsys.readouterr().out
  generator = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
               if "generator" in jax.tree_util.keystr(path)]
  assert generator and not any(x.any() for x in generator)
  assert params["electra"]["embeddings"]["word_embeddings"]["embedding"].any()


if __name__ == "__main__":
  main(sys.argv[1:])
