"""The pre-training loop: init or restore, step, evaluate, log, checkpoint.

`run(config, workdir)` is the whole program; main.py only parses flags.
Running it again on the same workdir resumes from the latest checkpoint, and
since batch k is a pure function of (seed, k) the resumed run is the same
run, bit for bit. With train.phases (config.py) the run goes through phases of
different sequence lengths; batch j of a phase is a pure function of (seed, j).
"""
import contextlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from lm_jax import checkpoint, config as config_lib, families, init_from, lock as lock_lib
from lm_jax import metrics as metrics_lib, parallel, paths, state, workdir as workdir_lib
from lm_jax.data import sources
from lm_jax.families.base import trivial_metrics
from lm_jax.errors import UserError


# ---------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------

def learning_rate_schedule(train_cfg, total_steps):
  """Linear warm-up to the peak, then (train.schedule) linear decay to 0 at
  `total_steps`, or the peak held constant."""
  warmup, peak = train_cfg.warmup_steps, train_cfg.learning_rate
  after = (optax.constant_schedule(peak) if train_cfg.schedule == "constant" else
           optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1)))
  return optax.join_schedules([optax.linear_schedule(0.0, peak, max(warmup, 1)), after], [warmup])


def _decays(path, _):
  """BERT's rule: no weight decay on biases and LayerNorm parameters (ELMo's
  softmax bias is bilm-tf's `b`)."""
  return path[-1].key not in ("bias", "scale", "b")


def _decay_mask(params):
  return jax.tree_util.tree_map_with_path(_decays, params)


def make_optimizer(train_cfg, total_steps):
  """Global-norm clipping (train.max_grad_norm), then train.optimizer.

  train.weight_decay is decoupled for every optimizer: each step takes lr * wd * p
  off a decayed parameter p (inside the trust ratio for LAMB, as in its paper), and
  _decays exempts biases and norms.
  """
  lr = learning_rate_schedule(train_cfg, total_steps)
  wd, setting = train_cfg.weight_decay, lambda key: config_lib.optimizer_setting(train_cfg, key)
  name = train_cfg.optimizer
  if name == "adamw":
    opt = optax.adamw(lr, b1=train_cfg.adam_b1, b2=train_cfg.adam_b2, eps=train_cfg.adam_eps,
                      weight_decay=wd, mask=_decay_mask)
  elif name == "lamb":
    # optax.lamb would apply the trust ratio to biases and norms too; ALBERT's
    # lamb_optimizer.py and NVIDIA's FusedLAMB exempt them, as from weight decay.
    opt = optax.chain(
        optax.scale_by_adam(b1=train_cfg.adam_b1, b2=train_cfg.adam_b2, eps=train_cfg.adam_eps),
        optax.add_decayed_weights(wd, _decay_mask),
        optax.masked(optax.scale_by_trust_ratio(), _decay_mask),
        optax.scale_by_learning_rate(lr))
  elif name == "adafactor":
    # optax adds weight_decay_rate * p after the learning rate; scaling the rate
    # by the schedule makes it the same decoupled decay as AdamW's.
    opt = optax.adafactor(
        lr, decay_rate=setting("adafactor_decay_rate"),
        clipping_threshold=setting("adafactor_clipping_threshold"),
        min_dim_size_to_factor=setting("adafactor_min_dim_size_to_factor"),
        momentum=setting("adafactor_momentum"),
        weight_decay_rate=lambda count: wd * lr(count), weight_decay_mask=_decay_mask)
  elif name == "adagrad":
    opt = optax.chain(  # optax.adagrad, with the decoupled decay before the learning rate
        optax.scale_by_rss(initial_accumulator_value=setting("adagrad_initial_accumulator_value"),
                           eps=setting("adagrad_eps")),
        optax.add_decayed_weights(wd, _decay_mask),
        optax.scale_by_learning_rate(lr))
  else:  # config.validate refuses it first; this is for callers that skip validation
    raise UserError(f"train.optimizer={name!r} is not one of {config_lib.OPTIMIZERS}.")
  return optax.chain(optax.clip_by_global_norm(train_cfg.max_grad_norm), opt)


# ---------------------------------------------------------------------------
# The train step
# ---------------------------------------------------------------------------

def make_train_step(ms, config, mesh, rule_table):
  """The jitted step (params, opt_state, batch, step[, carry]) -> (params, opt_state,
  metrics[, carry]); the carry is the family's recurrent state, when it has one."""
  loss_fn = families.get(config.model).loss
  accum = config.train.grad_accum_steps
  base_key = jax.random.key(config.seed)
  batch_sh = parallel.batch_sharding(mesh, rule_table)
  has_carry = initial_carry(config) is not None

  def compute_loss(params, batch, key, *carry):
    return loss_fn(ms.model(params), batch, key, *carry)

  grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

  def train_step(params, opt_state, batch, step, *carry):
    key = jax.random.fold_in(base_key, step)  # dropout: a function of (seed, step)
    if carry:  # validate() refuses gradient accumulation with a carry
      (loss, (m, new_carry)), grads = grad_fn(params, batch, key, *carry)
      carry = (new_carry,)
    elif accum == 1:
      (loss, m), grads = grad_fn(params, batch, key)
    else:
      # Micro-batch i takes rows i, i+accum, ...: each device keeps its own rows.
      def split(x):
        x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(None, *batch_sh.spec)))
      micro = jax.tree.map(split, batch)

      def body(carry, xs):
        mb, i = xs
        out = grad_fn(params, mb, jax.random.fold_in(key, i))
        return jax.tree.map(jnp.add, carry, out), None

      shapes = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro), key)
      zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
      ((loss, m), grads), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      loss, m, grads = jax.tree.map(lambda x: x / accum, (loss, m, grads))
    updates, opt_state = ms.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    m = dict(m, loss=loss, grad_norm=optax.tree.norm(grads),
             learning_rate=learning_rate_schedule(config.train, config_lib.schedule_steps(config))(step))
    return (params, opt_state, m, *carry)

  carry_sh = (batch_sh,) if has_carry else ()  # rows of the carry go with rows of the batch
  return jax.jit(train_step,
                 in_shardings=(ms.param_shardings, ms.opt_shardings, batch_sh, None, *carry_sh),
                 out_shardings=(ms.param_shardings, ms.opt_shardings, None, *carry_sh),
                 donate_argnums=(0, 1, 4) if has_carry else (0, 1))


def initial_carry(config, mesh=None, rule_table=None):
  """The family's zero recurrent state for a train batch (sharded like the batch when
  a mesh is given; abstract shapes without one), or None: batches are independent."""
  make = families.get(config.model).initial_carry
  if make is None:
    return None
  fn = lambda: make(config, config.train.batch_size)
  if mesh is None:
    return jax.eval_shape(fn)
  return jax.jit(fn, out_shardings=parallel.batch_sharding(mesh, rule_table))()


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

class _Preemption:
  """SIGTERM (preemption) asks the loop to save and exit cleanly.

  With several processes, JAX's preemption service (started by
  jax.distributed.initialize) owns SIGTERM and makes all processes stop at
  the same step; a Python handler would hide the signal from it.
  """

  def __init__(self):
    self.requested = False
    self._old = None
    if jax.process_count() == 1:
      self._old = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, *_):
    self.requested = True

  def should_stop(self, step):
    if jax.process_count() > 1:  # every process must agree on the step
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def restore(self):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def run(config, workdir):
  """Pre-trains (or, with model.task, fine-tunes) the model the config names,
  in (or resuming in) `workdir`."""
  config = init_from.architecture(config)  # init.from_hf / init.from_workdir's model section
  families.validate(config)
  if families.get(config.model).labelled:  # pre-training's input is checked when prepared, once
    sources.check_inputs(config.data)  # a bad file is one sentence before any work
  workdir = paths.absolute(workdir)  # local: absolute; gs://: as it is
  with _one_writer(workdir):
    return _run(config, workdir)


@contextlib.contextmanager
def _one_writer(workdir):
  """Process 0 holds WORKDIR's lock (it writes for every process) from the first
  write to the last; every process learns whether it got it, so all stop together."""
  lock = lock_lib.WorkdirLock(workdir) if jax.process_index() == 0 else None
  refused = None
  try:
    if lock:
      lock.acquire()
  except UserError as e:
    refused = e
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(
      np.int32(refused is None)) and refused is None:
    refused = UserError(f"Process 0 could not lock {workdir} (its output says why); stop the "
                        "other run on this workdir, or use another --workdir.")
  if refused:
    raise refused
  try:
    yield
  finally:
    if lock:
      lock.release()


def _run(config, workdir):
  family = families.get(config.model)
  mesh = parallel.make_mesh(config.mesh)
  rule_table = parallel.rules(config.mesh)
  parallel.check_batch_split(mesh, rule_table)
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  in_phases = bool(config_lib.phases_spec(config.train))
  for phase in config_lib.phases(config):  # train.phases may give each phase its own batch
    micro = phase.batch_size // config.train.grad_accum_steps
    batch = f"phase {phase.number}'s batch" if in_phases else "train.batch_size"
    if micro % dp:
      raise UserError(f"The micro-batch {batch} / train.grad_accum_steps = {micro} is not "
                      f"divisible by the {dp} data-parallel devices; make it a multiple of {dp}.")
  workdir_lib.check_workdir(config, workdir)  # config.json is written once the run starts
  if jax.process_index() == 0:
    print(config_lib.to_json(config), flush=True)
  print(parallel.layout(mesh), flush=True)  # every process: who is who

  # ---- Tokenizer and data (one PhaseData per train.phases phase) ----------
  phased = workdir_lib.run_data(config, workdir)

  # ---- Model and optimizer state ----------------------------------------
  total = config_lib.schedule_steps(config)
  ms = state.ModelState(config, mesh, rule_table, make_optimizer(config.train, total))
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  with parallel.activate(mesh, rule_table):
    train_step = make_train_step(ms, config, mesh, rule_table)
    if config.train.compile_only:  # each phase's shapes (the last one's compiled step is returned)
      ckpt.close()
      for p in phased:
        if in_phases:
          print(f"Phase {p.phase.number}: seq_len {p.phase.seq_len}, batch {p.phase.batch_size}.",
                flush=True)
        compiled = _compile_only(train_step, ms, p.train.global_batch(0, p.phase.batch_size),
                                 initial_carry(config))
      return compiled
    start = ckpt.latest_step()
    carry = initial_carry(config, mesh, rule_table)  # the recurrent state, if the family has one
    if start is None:
      start = 0
      params, opt_state = ms.init(config.seed)  # Adam's fresh state does not depend on the values
      params = init_from.weights(config, params, mesh, rule_table)
    else:
      if carry is None:
        params, opt_state = ckpt.restore(start, ms.abstract_params, ms.abstract_opt_state)
      else:
        params, opt_state, carry = ckpt.restore(
            start, ms.abstract_params, ms.abstract_opt_state,
            checkpoint.abstract(carry, jax.tree.map(lambda x: x.sharding, carry)))
      print(f"Resumed from step {start} in {ckpt.dir}", flush=True)
    if start >= config.train.steps:
      print(f"Nothing to do: the workdir is already at step {start} >= train.steps.", flush=True)
      ckpt.close()
      return
    # A phase's held-out loss is measured at its own seq_len and batch.
    evaluators = [family.evaluator(ms, p.phase.config, mesh, rule_table, p.eval, family.loss)
                  if p.eval is not None else None for p in phased]
    workdir_lib.record_config(config, workdir)  # everything checked: this config now runs
    _train_loop(config, workdir, ckpt, train_step, evaluators, phased, params, opt_state,
                start, mesh, rule_table, carry)


def _phase_batches(config, phased, start):
  """(step, phase index, this process's batch) for steps start + 1 ... train.steps: a
  phase's batch j (its step first_step + j + 1) is global batch j of its examples."""
  for i, p in enumerate(phased):
    first, last = max(start, p.phase.first_step), min(config.train.steps, p.phase.last_step)
    if first >= last:
      continue
    batches = p.train.batches(p.phase.batch_size, first - p.phase.first_step,
                              last - p.phase.first_step, jax.process_index(),
                              jax.process_count(), config.data.worker_threads)
    for step in range(first + 1, last + 1):
      yield step, i, next(batches)


def _train_loop(config, workdir, ckpt, train_step, evaluators, phased,
                params, opt_state, start, mesh, rule_table, carry=None):
  t = config.train
  writer = metrics_lib.MetricsWriter(workdir, resume_step=start, total_steps=t.steps)
  preemption = _Preemption()
  hidden = trivial_metrics(config)  # left off the progress and eval lines
  shown = tuple(m for m in families.get(config.model).progress_metrics if m not in hidden)
  in_phases = bool(config_lib.phases_spec(t))  # then metrics.jsonl and the progress line
  if in_phases:                                # say which phase each step is in
    shown = ("phase", *shown)
  watch, last_logged = metrics_lib.Stopwatch(), start
  carry = () if carry is None else (carry,)
  try:
    for step, i, batch in _phase_batches(config, phased, start):
      phase, evaluator = phased[i].phase, evaluators[i]
      batch = parallel.host_to_global(batch, mesh, rule_table)
      params, opt_state, m, *carry = train_step(params, opt_state, batch, jnp.int32(step - 1),
                                                *carry)
      if step % t.log_every == 0 or step == t.steps:
        m = {k: float(v) for k, v in jax.device_get(m).items()}
        if not np.isfinite(m["loss"]):
          _diverged(ckpt, step, f"the loss became {m['loss']}")
        steps_per_s = (step - last_logged) / watch.lap()
        m["tokens_per_s"] = steps_per_s * phase.batch_size * phase.seq_len
        if in_phases:
          m["phase"] = phase.number
        last_logged = step
        writer.write(step, m)
        writer.progress(step, m, steps_per_s, shown)
      if evaluator and (step % t.eval_every == 0 or step == t.steps):
        m = evaluator(params)
        writer.write(step, m)
        writer.eval_line(step, {k: v for k, v in m.items() if k[len("eval_"):] not in hidden})
      if step % t.checkpoint_every == 0 or step == t.steps:
        writer.flush()  # a resume from this checkpoint finds every line logged before it
        _save_if_finite(ckpt, step, params, opt_state, carry)
      if preemption.should_stop(step):
        writer.flush()
        _save_if_finite(ckpt, step, params, opt_state, carry)
        print(f"Preempted: saved step {step}; run the same command to resume.", flush=True)
        break
  finally:
    preemption.restore()
    ckpt.close()
    writer.close()


# Every process computes the same replicated flag, so all of them take the same branch.
_all_finite = jax.jit(lambda tree: jnp.all(jnp.stack(
    [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)])))


def _save_if_finite(ckpt, step, params, opt_state, carry):
  """Saves `step` unless its parameters hold a NaN or an infinity: a diverged
  model is never checkpointed, so the rotation (keep_checkpoints) can only
  drop good checkpoints for newer good ones."""
  if not bool(_all_finite(params)):
    _diverged(ckpt, step, "the parameters are no longer finite")
  ckpt.save(step, params, opt_state, *carry)


def _diverged(ckpt, step, what):
  ckpt.wait()  # the newest complete save is the last good one
  good = ckpt.latest_step()
  fallback = (f"the last good checkpoint is step {good}" if good is not None
              else "no checkpoint was saved before it")
  raise UserError(f"Training diverged at step {step} ({what}); lower train.learning_rate or "
                  f"raise train.warmup_steps and run again ({fallback}).")


def _compile_only(train_step, ms, example_batch, abstract_carry=None):
  """Lowers and compiles the step for the mesh and prints per-device memory."""
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), example_batch)
  carry = () if abstract_carry is None else (abstract_carry,)
  compiled = train_step.lower(ms.abstract_params, ms.abstract_opt_state, batch,
                              jax.ShapeDtypeStruct((), jnp.int32), *carry).compile()
  mem = compiled.memory_analysis()
  gib = lambda n: n / 2**30
  if mem is not None:
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)
    print(f"Compiled. Per-device memory estimate: {gib(total):.3f} GiB (arguments "
          f"{gib(mem.argument_size_in_bytes):.3f}, temporaries {gib(mem.temp_size_in_bytes):.3f}, "
          f"outputs {gib(mem.output_size_in_bytes):.3f}, donated {gib(mem.alias_size_in_bytes):.3f}).",
          flush=True)
  else:
    print("Compiled. This backend gives no memory estimate.", flush=True)
  return compiled
