"""Meshes and sharding on 8 fake CPU devices.

The sharded runs happen in one subprocess (the device count is fixed when
JAX starts): this file run as a script does the work and prints its findings
as JSON; the tests below check them.
"""
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from conftest import REPO, run_main

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
STEPS = 5


def mesh_cfg(**sizes):
  from lm_jax import config
  c = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1,
                                     rules=config.DEFAULT_RULES))
  c.update(sizes)
  return c


# ---------------------------------------------------------------------------
# Mesh sizes (no devices needed)
# ---------------------------------------------------------------------------

def test_minus_one_takes_the_remaining_devices():
  from lm_jax import parallel
  assert parallel.mesh_shape(mesh_cfg(), 8) == (8, 1, 1)
  assert parallel.mesh_shape(mesh_cfg(data=2, fsdp=-1, tensor=2), 8) == (2, 2, 2)
  assert parallel.mesh_shape(mesh_cfg(data=1, fsdp=4, tensor=2), 8) == (1, 4, 2)
  assert parallel.mesh_shape(mesh_cfg(data=-1, fsdp=2, dcn_data=2), 8) == (2, 2, 1)


@pytest.mark.parametrize("sizes, devices, words", [
    (dict(data=2, fsdp=2, tensor=3), 8, "2 x 2 x 3 = 12 does not match the 8 devices"),
    (dict(data=3, fsdp=-1), 8, "3 x -1 x 1 cannot fill the 8 devices"),
    (dict(data=-1, fsdp=-1), 8, "at most one -1"),
    (dict(dcn_data=3), 8, "dcn_data x mesh.dcn_fsdp = 3 x 1 does not divide the 8 devices"),
    (dict(data=4, dcn_data=2), 16, "4 x 1 x 1 = 4 does not match the 8 devices per slice"),
])
def test_mesh_mismatch_is_one_sentence_with_the_numbers(sizes, devices, words):
  from lm_jax import parallel
  from lm_jax.errors import UserError
  with pytest.raises(UserError, match=words) as e:
    parallel.mesh_shape(mesh_cfg(**sizes), devices)
  assert "\n" not in str(e.value) and str(e.value).endswith(".")


def test_mesh_mismatch_on_the_command_line(tmp_path):
  r = run_main(tmp_path, "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=3",
               env=EIGHT_DEVICES)
  assert r.returncode == 2, r.stderr
  assert r.stderr.strip() == ("error: mesh data x fsdp x tensor = 2 x 2 x 3 = 12 does not match "
                              "the 8 devices; make the product 8 or set one of them to -1.")


# ---------------------------------------------------------------------------
# Sharded training, shardings and checkpoints on 8 devices (one subprocess)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eight_devices(tokenizer_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("eight_devices")
  r = subprocess.run([sys.executable, os.path.abspath(__file__), tokenizer_dir, str(out)],
                     cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, **EIGHT_DEVICES),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.strip().splitlines()[-1])


def test_sharded_losses_match_one_device(eight_devices):
  one, sharded = np.array(eight_devices["losses_1"]), np.array(eight_devices["losses_2x2x2"])
  assert len(one) == STEPS and np.all(np.isfinite(one))
  assert len(set(one.round(6))) > 1  # the steps really train
  np.testing.assert_allclose(sharded, one, rtol=1e-5)


def test_params_and_optimizer_state_are_created_sharded(eight_devices):
  specs = eight_devices["specs"]
  # FSDP shards the embedding dimension; tensor parallelism splits vocab, heads and MLP.
  assert specs["bert/embeddings/word_embeddings/embedding"] == [["tensor"], ["fsdp"]]
  layer = "bert/encoder/layer/0/"
  assert specs[layer + "attention/self/query/kernel"] == [["fsdp"], ["tensor"]]
  assert specs[layer + "attention/output/dense/kernel"] == [["tensor"], ["fsdp"]]
  assert specs[layer + "intermediate/dense/kernel"] == [["fsdp"], ["tensor"]]
  assert specs[layer + "output/dense/kernel"] == [["tensor"], ["fsdp"]]
  # No device holds a whole sharded parameter or its Adam moments.
  assert eight_devices["whole_on_one_device"] == []
  assert eight_devices["opt_state_like_params"]
  assert eight_devices["sharding_constraints"] > 0  # activations are constrained too


def test_restore_onto_other_meshes_gives_identical_params(eight_devices):
  assert eight_devices["saved_on"] == {"data": 1, "fsdp": 8, "tensor": 1}
  for name in ("4_devices_data2_fsdp2", "1_device"):
    restored = eight_devices["restored"][name]
    assert restored["params_equal"] and restored["opt_state_equal"], name
    assert restored["on_target_sharding"], name


def test_dcn_axes_put_slices_outermost(eight_devices):
  assert eight_devices["hybrid_shape"] == {"data": 4, "fsdp": 2, "tensor": 1}
  assert eight_devices["hybrid_first_half"] == [0, 1, 2, 3]


def test_compile_only_prints_memory_and_does_not_train(tmp_path, tokenizer_dir):
  from lm_jax import config
  # The rules table can be overridden on the command line too (here: vocab not split).
  rules = tuple((name, None if name == "vocab" else axes) for name, axes in config.DEFAULT_RULES)
  r = run_main(tmp_path, "--config.train.compile_only=True", f"--config.data.tokenizer={tokenizer_dir}",
               "--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.mesh.tensor=2",
               f"--config.mesh.rules={rules!r}", env=EIGHT_DEVICES)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "mesh {'data': 1, 'fsdp': 4, 'tensor': 2}" in r.stdout
  printed = json.loads(r.stdout[r.stdout.index("{"):r.stdout.index("\n}\n") + 2])
  assert ["vocab", None] in printed["mesh"]["rules"] and ["mlp", "tensor"] in printed["mesh"]["rules"]
  assert "Compiled. Per-device memory estimate:" in r.stdout
  assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")
  assert not (tmp_path / "metrics.jsonl").exists()


# ---------------------------------------------------------------------------
# The subprocess
# ---------------------------------------------------------------------------

def _subprocess_main(tokenizer_dir, out_dir):
  import jax
  import jax.numpy as jnp
  from conftest import prepared_examples, tiny_config
  from lm_jax import checkpoint, parallel, state, train

  assert jax.device_count() == 8
  devices = jax.devices()
  config = tiny_config(tokenizer_dir, **{"train.steps": STEPS})
  data = prepared_examples(config, os.path.join(out_dir, "corpus"))
  result = {}

  def setup(devs, **sizes):
    c = tiny_config(tokenizer_dir, **{"train.steps": STEPS})
    c.mesh.update(sizes)
    mesh, rules = parallel.make_mesh(c.mesh, devs), parallel.rules(c.mesh)
    return c, mesh, rules, state.ModelState(c, mesh, rules, train.make_optimizer(c.train, STEPS))

  def train_steps(devs, steps=STEPS, **sizes):
    c, mesh, rules, ms = setup(devs, **sizes)
    with parallel.activate(mesh, rules):
      step_fn = train.make_train_step(ms, c, mesh, rules)
      params, opt_state = ms.init(c.seed)
      losses = []
      for k in range(steps):
        batch = parallel.host_to_global(data.global_batch(k, c.train.batch_size), mesh, rules)
        if k == 0:
          hlo = step_fn.lower(params, opt_state, batch, jnp.int32(0)).as_text()
          result["sharding_constraints"] = hlo.count("sharding_constraint")
        params, opt_state, m = step_fn(params, opt_state, batch, jnp.int32(k))
        losses.append(float(m["loss"]))
    return losses, params, opt_state, ms

  result["losses_1"] = train_steps(devices[:1], data=1)[0]
  losses, params, opt_state, _ = train_steps(devices, data=2, fsdp=2, tensor=2)
  result["losses_2x2x2"] = losses

  # Created sharded: every leaf sharded by its logical axes, none whole on a device.
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  name = lambda path: "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
  result["specs"] = {name(p): [list(a) if isinstance(a, tuple) else ([a] if a else [])
                               for a in x.sharding.spec] for p, x in flat}
  result["whole_on_one_device"] = [
      name(p) for p, x in flat
      if any(x.sharding.spec) and x.addressable_shards[0].data.size == x.size]
  adam = opt_state[1][0]  # chain(clip, adamw) -> adamw's ScaleByAdamState
  result["opt_state_like_params"] = all(
      m.sharding == p.sharding and v.sharding == p.sharding
      for m, v, p in zip(jax.tree.leaves(adam.mu), jax.tree.leaves(adam.nu), jax.tree.leaves(params)))

  # Save on fsdp=8, restore on 4 devices (data=2, fsdp=2) and on 1 device.
  _, saved_params, saved_opt, ms8 = train_steps(devices, steps=2, data=1, fsdp=8)
  result["saved_on"] = dict(ms8.param_shardings["bert"]["pooler"]["dense"]["kernel"].mesh.shape)
  ckpt = checkpoint.Checkpointer(out_dir)
  ckpt.save(2, saved_params, saved_opt)
  ckpt.close()
  same = lambda a, b: all(np.array_equal(np.asarray(x), np.asarray(y))
                          for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  result["restored"] = {}
  for label, devs, sizes in (("4_devices_data2_fsdp2", devices[:4], dict(data=2, fsdp=2)),
                             ("1_device", devices[:1], dict(data=1))):
    _, mesh, _, ms = setup(devs, **sizes)
    ckpt = checkpoint.Checkpointer(out_dir, read_only=True)
    params, opt_state = ckpt.restore(2, ms.abstract_params, ms.abstract_opt_state)
    ckpt.close()
    result["restored"][label] = dict(
        params_equal=same(params, saved_params), opt_state_equal=same(opt_state, saved_opt),
        on_target_sharding=all(x.sharding == s for x, s in zip(
            jax.tree.leaves(params), jax.tree.leaves(ms.param_shardings))))

  # Two slices (dcn_data=2) of 4 devices: the first slice's devices fill the first half.
  c = tiny_config(tokenizer_dir)
  c.mesh.update(data=2, fsdp=2, dcn_data=2)
  hybrid = parallel.make_mesh(c.mesh, devices)
  result["hybrid_shape"] = dict(hybrid.shape)
  result["hybrid_first_half"] = sorted(d.id for d in hybrid.devices[:2].flat)
  print(json.dumps(result))


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  _subprocess_main(*sys.argv[1:])
