"""train.optimizer = adamw | lamb | adafactor | adagrad: each trains every family it
fits with a falling loss, resumes bit for bit from a checkpoint, and gives the same
losses on a 2x2x2 mesh of 8 fake CPU devices as on one; config mistakes are one
sentence; the config files carry the papers' optimizers.

The training runs drive the real jitted step (state.ModelState + train.make_train_step)
on one fixed synthetic batch per family, in one subprocess with 8 devices: this file
run as a script does the work and prints its findings as JSON. Compiling a step is
nearly all of the time (3-12 s of CPU each), so AdamW, the default, is left to the
tests that already train and resume every family with it (test_train, test_encoders,
test_gpt, test_elmo; test_parallel for the mesh), and ELMo runs the optimizer of its
original config and Adafactor, whose factored moments meet its rank-3 kernels there.
"""
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, override

# Compiling the steps is nearly all the time; these two XLA flags cut it by four
# fifths on the CPU, and the runs that are compared all compile the same way.
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
                 "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
                 "JAX_PLATFORMS": "cpu"}
NEW = ("lamb", "adafactor", "adagrad")
FITS = dict(bert=NEW, roberta=NEW, albert=NEW, electra=NEW, gpt2=NEW, elmo=("adafactor", "adagrad"))
CONFIG_FILES = dict(bert="bert_base", roberta="roberta", albert="albert", electra="electra",
                    gpt2="gpt2", elmo="elmo")
# Peak learning rates that move a tiny model on one batch in a few steps; LAMB's and
# Adafactor's are relative to each parameter's norm, Adagrad's divides by sqrt(sum g^2).
PEAK_LR = dict(adamw=3e-3, lamb=2e-2, adafactor=3e-2, adagrad=1e-1)
STEPS, SAVED_AT = 12, 6
MESH_RUNS = [("gpt2", o) for o in NEW]  # GPT-2's steps compile fastest

# No dropout: the loss on the fixed batch falls steadily, and the graphs compile faster.
ENCODER = {"model.hidden_size": 32, "model.num_hidden_layers": 1, "model.num_attention_heads": 2,
           "model.intermediate_size": 64, "model.vocab_size": 512,
           "model.max_position_embeddings": 16, "data.seq_len": 16,
           "data.max_predictions_per_seq": 4, "model.hidden_dropout_prob": 0.0,
           "model.attention_probs_dropout_prob": 0.0}
SHRINK = dict(
    bert=ENCODER,
    roberta={**ENCODER, "model.max_position_embeddings": 18},  # positions start at pad + 1
    albert={**ENCODER, "model.embedding_size": 16, "model.num_hidden_layers": 2,
            "model.classifier_dropout_prob": 0.0},
    electra={**ENCODER, "model.embedding_size": 24, "model.generator_hidden_size": 16,
             "model.generator_num_hidden_layers": 1, "model.generator_num_attention_heads": 2,
             "model.generator_intermediate_size": 32},
    gpt2={"model.n_embd": 32, "model.n_layer": 1, "model.n_head": 2, "model.vocab_size": 512,
          "model.n_positions": 16, "data.seq_len": 16, "data.max_predictions_per_seq": 4,
          "model.resid_pdrop": 0.0, "model.embd_pdrop": 0.0, "model.attn_pdrop": 0.0},
    elmo={"model.vocab_size": 256, "model.max_characters_per_token": 8,
          "model.char_embedding_dim": 8, "model.filters": [[1, 8], [2, 8], [3, 16]],
          "model.n_highway": 1, "model.projection_dim": 16, "model.lstm_dim": 32,
          "model.n_negative_samples": 64, "model.dropout": 0.0, "data.seq_len": 5},
)


def tiny_config(family, optimizer):
  """configs/<family>.py:tiny, far smaller, training with `optimizer` (batch 8)."""
  c = importlib.import_module(f"configs.{CONFIG_FILES[family]}").get_config("tiny")
  override(c, SHRINK[family])
  c.train.update(optimizer=optimizer, learning_rate=PEAK_LR[optimizer], warmup_steps=2,
                 schedule_steps=4 * STEPS, steps=STEPS, batch_size=8, weight_decay=0.01)
  if optimizer == "adafactor":  # factor the tiny matrices too, and keep a first moment
    c.train.update(adafactor_min_dim_size_to_factor=8, adafactor_momentum=0.9)
  return c


# ---------------------------------------------------------------------------
# Training, resume and the mesh (one subprocess)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("optimizers")
  r = subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], cwd=REPO,
                     env=dict(os.environ, PYTHONPATH=REPO, **EIGHT_DEVICES),
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", FITS)
def test_every_optimizer_trains_every_family(runs, family):
  for optimizer in FITS[family]:
    losses = runs["losses"][f"{family}/{optimizer}"]
    assert np.all(np.isfinite(losses)), (family, optimizer, losses)
    # ELMo's sampled softmax draws new negatives each step: compare averages.
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, (family, optimizer, losses)


@pytest.mark.parametrize("family", FITS)
def test_resume_from_a_checkpoint_is_bit_for_bit(runs, family):
  for optimizer in FITS[family]:
    run = f"{family}/{optimizer}"
    assert runs["resumed"][run] == runs["losses"][run][SAVED_AT:], run
    assert runs["same_params"][run], run


@pytest.mark.parametrize("family, optimizer", MESH_RUNS)
def test_mesh_gives_the_losses_of_one_device(runs, family, optimizer):
  run = f"{family}/{optimizer}"
  np.testing.assert_allclose(runs["mesh_losses"][run], runs["losses"][run], rtol=1e-5)


def test_adafactor_factored_moments_are_sharded_along_the_kept_axes(runs):
  rows = runs["adafactor_state"]  # (state shape, param shape, state spec, param spec)
  factored = 0
  for state_shape, param_shape, state_spec, param_spec in rows:
    param_spec = param_spec + [None] * (len(param_shape) - len(param_spec))
    kept = [param_spec[:i] + param_spec[i + 1:] for i in range(len(param_shape))
            if param_shape[:i] + param_shape[i + 1:] == state_shape]
    if kept:  # a factored moment: the parameter with one axis averaged out
      factored += 1
      state_spec = state_spec + [None] * (len(state_shape) - len(state_spec))
      # A square kernel leaves the axis ambiguous; then the small row is replicated.
      assert state_spec in kept or (len(kept) > 1 and not any(state_spec)), (state_shape,
                                                                           param_shape)
  assert factored > 10
  # The token embedding (vocab x embed: tensor x fsdp) keeps each sharding in its row or column.
  assert [[512], [512, 32], ["tensor"], ["tensor", "fsdp"]] in rows
  assert [[32], [512, 32], ["fsdp"], ["tensor", "fsdp"]] in rows
  # Leaves shaped as their parameter (momentum, vectors' second moments) are sharded as it.
  assert any(r[0] == r[1] and r[2] == r[3] and any(r[3]) for r in rows)


def _subprocess_main(out_dir):
  import jax
  import jax.numpy as jnp
  import optax
  from lm_jax import checkpoint, config as config_lib, families, parallel, state, train

  assert jax.device_count() == 8
  devices = jax.devices()
  result = dict(losses={}, resumed={}, same_params={}, mesh_losses={},
                cpu_s={})  # CPU seconds of each run (compilation), to see what a run costs
  spec = lambda s: [a if isinstance(a, str) or a is None else list(a) for a in s.spec]

  def setup(family, optimizer, devs, **sizes):
    c = tiny_config(family, optimizer)
    c.mesh.update(sizes)
    families.validate(c)
    mesh, rules = parallel.make_mesh(c.mesh, devs), parallel.rules(c.mesh)
    ms = state.ModelState(c, mesh, rules,
                          train.make_optimizer(c.train, config_lib.schedule_steps(c)))
    batch = families.get(c.model).synthetic_batch(c, np.random.default_rng(0))
    return c, mesh, rules, ms, parallel.host_to_global(batch, mesh, rules)

  def steps(step_fn, params, opt_state, carry, batch, first, last):
    losses = []
    for k in range(first, last):
      params, opt_state, m, *carry = step_fn(params, opt_state, batch, jnp.int32(k), *carry)
      losses.append(float(m["loss"]))
    return params, opt_state, carry, losses

  for family, optimizers in FITS.items():
    fresh = None  # the family's initial parameters, made once by ModelState.init
    for optimizer in optimizers:
      run = f"{family}/{optimizer}"
      t0 = time.process_time()
      c, mesh, rules, ms, batch = setup(family, optimizer, devices[:1], data=1)
      with parallel.activate(mesh, rules):
        step_fn = train.make_train_step(ms, c, mesh, rules)
        fresh = fresh or ms.init(c.seed)[0]
        params = jax.tree.map(jnp.copy, fresh)  # the step donates its arguments
        opt_state = jax.jit(ms.tx.init, out_shardings=ms.opt_shardings)(params)
        carry = train.initial_carry(c, mesh, rules)
        carry = () if carry is None else (carry,)
        params, opt_state, carry, first = steps(step_fn, params, opt_state, carry, batch, 0, SAVED_AT)
        ckpt = checkpoint.Checkpointer(os.path.join(out_dir, family, optimizer))
        ckpt.save(SAVED_AT, params, opt_state, *carry)
        ckpt.wait()
        params, opt_state, carry, rest = steps(step_fn, params, opt_state, carry, batch,
                                               SAVED_AT, STEPS)
        result["losses"][run] = first + rest
        abstract_carry = [checkpoint.abstract(x, jax.tree.map(lambda a: a.sharding, x))
                          for x in carry]
        restored = ckpt.restore(SAVED_AT, ms.abstract_params, ms.abstract_opt_state,
                                *abstract_carry)
        ckpt.close()
        p2, o2, _, result["resumed"][run] = steps(step_fn, restored[0], restored[1],
                                                  list(restored[2:]), batch, SAVED_AT, STEPS)
        result["same_params"][run] = all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves((params, opt_state)), jax.tree.leaves((p2, o2))))
        result["cpu_s"][run] = time.process_time() - t0

  for family, optimizer in MESH_RUNS:
    run = f"{family}/{optimizer}"
    t0 = time.process_time()
    c, mesh, rules, ms, batch = setup(family, optimizer, devices, data=2, fsdp=2, tensor=2)
    with parallel.activate(mesh, rules):
      step_fn = train.make_train_step(ms, c, mesh, rules)
      params, opt_state = ms.init(c.seed)
      carry = train.initial_carry(c, mesh, rules)
      carry = () if carry is None else (carry,)
      params, opt_state, _, result["mesh_losses"][run] = steps(step_fn, params, opt_state, carry,
                                                              batch, 0, STEPS)
    if optimizer == "adafactor":
      rows = result["adafactor_state"] = []
      optax.tree_map_params(
          ms.tx, lambda s, p: rows.append([list(s.shape), list(p.shape), spec(s.sharding),
                                           spec(p.sharding)]),
          opt_state, params, transform_non_params=lambda _: None)
    result["cpu_s"]["mesh " + run] = time.process_time() - t0
  print(json.dumps(result))


# ---------------------------------------------------------------------------
# Config: the keys, their checks, the config files (no devices needed)
# ---------------------------------------------------------------------------

def _refused(c, words):
  from lm_jax import config as config_lib
  from lm_jax.errors import UserError
  with pytest.raises(UserError) as e:
    config_lib.validate(c)
  assert str(e.value) == words
  return e


@pytest.mark.parametrize("optimizer, key, value, other", [
    ("adamw", "adagrad_eps", 1e-3, "adagrad"),
    ("lamb", "adafactor_momentum", 0.9, "adafactor"),
    ("adagrad", "adafactor_min_dim_size_to_factor", 64, "adafactor"),
    ("adafactor", "adagrad_initial_accumulator_value", 1.0, "adagrad"),
])
def test_a_key_of_another_optimizer_is_refused(optimizer, key, value, other):
  from lm_jax import config as config_lib
  c = config_lib.base_config()
  c.train.update({"optimizer": optimizer, key: value})
  _refused(c, f"train.{key} is an {other} key but train.optimizer={optimizer}; remove it or "
              f"set train.optimizer={other}.")
  c.train.optimizer = other
  config_lib.validate(c)  # the same key with its own optimizer is fine


@pytest.mark.parametrize("overrides, words", [
    ({"train.optimizer": "sgd"},
     "train.optimizer='sgd' is not one of ('adamw', 'lamb', 'adafactor', 'adagrad')."),
    ({"train.schedule": "cosine"}, "train.schedule='cosine' is not one of ('linear', 'constant')."),
    ({"train.max_grad_norm": 0.0}, "train.max_grad_norm=0.0 must be positive."),
    ({"train.adam_b2": 1.0}, "train.adam_b2=1.0 must be in [0, 1)."),
    ({"train.optimizer": "adafactor", "train.adafactor_decay_rate": 1.5},
     "train.adafactor_decay_rate=1.5 must be in (0, 1]."),
    ({"train.optimizer": "adafactor", "train.adafactor_momentum": 1.0},
     "train.adafactor_momentum=1.0 must be in [0, 1)."),
    ({"train.optimizer": "adagrad", "train.adagrad_eps": -1.0},
     "train.adagrad_eps=-1.0 must be >= 0."),
])
def test_bad_optimizer_values_are_one_sentence(overrides, words):
  from lm_jax import config as config_lib
  _refused(override(config_lib.base_config(), overrides), words)


def test_unset_keys_take_the_optimizers_defaults():
  from lm_jax import config as config_lib
  t = config_lib.base_config().train
  assert t.adafactor_decay_rate is None and t.adagrad_eps is None  # config.json: null
  assert config_lib.optimizer_setting(t, "adafactor_decay_rate") == 0.8
  assert config_lib.optimizer_setting(t, "adagrad_initial_accumulator_value") == 0.1
  t.adagrad_initial_accumulator_value = 1  # an int is taken as the float it means
  assert config_lib.optimizer_setting(t, "adagrad_initial_accumulator_value") == 1.0
  with pytest.raises(TypeError):  # the placeholder keeps the key typed
    t.adafactor_min_dim_size_to_factor = 1.5


def test_constant_schedule_holds_the_peak_after_warm_up():
  from lm_jax import config as config_lib, train
  t = config_lib.base_config().train
  t.update(learning_rate=0.2, warmup_steps=0, schedule="constant")
  lr = train.learning_rate_schedule(t, 100)
  assert [float(lr(s)) for s in (0, 50, 99, 500)] == pytest.approx([0.2] * 4)
  t.update(warmup_steps=10, schedule="linear")
  lr = train.learning_rate_schedule(t, 110)
  assert [float(lr(s)) for s in (5, 10, 60, 110)] == pytest.approx([0.1, 0.2, 0.1, 0.0])


def _config(name, variant):
  return importlib.import_module(f"configs.{name}").get_config(variant)


def test_config_files_carry_the_papers_optimizers():
  from lm_jax import config as config_lib, families
  for variant in ("base", "large"):  # Lan et al. 2019: LAMB, lr 0.00176, batch 4096
    t = _config("albert", variant).train
    assert (t.optimizer, t.learning_rate, t.batch_size) == ("lamb", 1.76e-3, 4096)
  t = _config("elmo", "original").train  # bilm-tf: Adagrad lr 0.2, accumulator 1.0, clip 10
  assert (t.optimizer, t.learning_rate, t.warmup_steps, t.schedule) == ("adagrad", 0.2, 0, "constant")
  # The same updates as bilm-tf's, whose gradient is that of 20 x the mean loss.
  assert t.adagrad_initial_accumulator_value * 20 ** 2 == pytest.approx(1.0)
  assert t.max_grad_norm * 20 == pytest.approx(10.0)
  c = _config("bert_base", "large_batch")  # NVIDIA's LAMB phase 1 (You et al. 2019)
  assert (c.train.optimizer, c.train.batch_size, c.train.learning_rate) == ("lamb", 65536, 6e-3)
  assert c.model.num_hidden_layers == 24 and c.data.seq_len == 128
  for name, variant in (("albert", "base"), ("elmo", "original"), ("bert_base", "large_batch")):
    families.validate(_config(name, variant))
  config_lib.validate(_config("bert_base", "tiny"))


def test_large_batch_is_a_known_variant():
  with pytest.raises(ValueError, match="large_batch"):
    _config("bert_base", "huge")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  _subprocess_main(*sys.argv[1:])
