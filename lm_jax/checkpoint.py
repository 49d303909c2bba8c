"""Orbax checkpoints under WORKDIR/checkpoints/<step>/{params,opt_state[,carry]}.

Parameters and optimizer state are separate items, so inference and export
read the parameters alone. `carry` is a recurrent family's LSTM state at the
step (ELMo with data.stateful), saved so that a resumed run continues exactly. Saves are asynchronous; Orbax writes each step to
a temporary folder and renames it when complete, so a killed run never
leaves a half-written checkpoint that would be taken for a good one (the
next start removes such temporaries). Restoring takes the target shardings,
so a checkpoint written on one mesh or host count loads onto any other.

Saving a step twice is a no-op (a preemption at a checkpoint step), and a
full disk during a save, wherever Orbax reports it (the save, a later wait
or close), is one UserError naming the last complete step.
"""
import errno
import re

import jax
import orbax.checkpoint as ocp

from lm_jax import paths
from lm_jax.errors import UserError


def directory(workdir):
  return paths.join(paths.absolute(workdir), "checkpoints")  # gs:// left as it is: Orbax speaks it


class Checkpointer:

  def __init__(self, workdir, *, keep=3, read_only=False):
    """`read_only`: for inference and export (never saves, never deletes)."""
    self.dir = directory(workdir)
    if read_only and not paths.isdir(self.dir):
      raise UserError(f"{workdir} has no checkpoints/ folder; train there first with lm_jax.main.")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           enable_async_checkpointing=not read_only,
                                           cleanup_tmp_directories=not read_only)
    self.manager = ocp.CheckpointManager(self.dir, options=options,
                                         item_names=("params", "opt_state", "carry"))
    self._pending = None  # the step being written asynchronously
    self._failed = False  # a save failed and was reported; close() must not report it again

  def steps(self):
    return sorted(self.manager.all_steps())

  def latest_step(self):
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step, params, opt_state, carry=None):
    """Starts an asynchronous save of `step`; nothing if `step` is saved or being saved."""
    if step in self.manager.all_steps():  # includes a save in progress
      return
    self.wait()  # a failure of the previous save is reported as that step's
    items = dict(params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state))
    if carry is not None:
      items["carry"] = ocp.args.StandardSave(carry)
    self._pending = step
    self._reporting(self.manager.save, step, args=ocp.args.Composite(**items), force=True)

  def _reporting(self, fn, *args, **kwargs):
    """Calls `fn`; a full disk while writing the pending step becomes one UserError."""
    try:
      return fn(*args, **kwargs)
    except Exception as e:
      self._failed = True
      step, self._pending = self._pending, None
      if step is None or not _no_space(e):
        raise
      complete = [s for s in self.steps() if s != step]
      last = (f"the last complete one is step {complete[-1]}, which the same command resumes "
              "from once there is space" if complete else
              "there is no complete one yet; free some space and start again")
      raise UserError(f"The checkpoint at step {step} could not be written (no space left on "
                      f"{self.dir}); {last}.") from None

  def restore(self, step, abstract_params, abstract_opt_state=None, abstract_carry=None):
    """Restores params (and opt_state / carry when their abstract trees are given).
    Returns (params, opt_state) or, with `abstract_carry`, (params, opt_state, carry).

    `abstract_*` are trees of jax.ShapeDtypeStruct carrying the target
    shardings. A checkpoint that cannot be read is one UserError naming the
    previous step, so the user knows what a resume would fall back to.
    """
    items = dict(params=ocp.args.StandardRestore(abstract_params))
    if abstract_opt_state is not None:
      items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
    if abstract_carry is not None:
      items["carry"] = ocp.args.StandardRestore(abstract_carry)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # Orbax/TensorStore raise many types for damaged files
      older = [s for s in self.steps() if s < step]
      fallback = (f"remove {self.dir}/{step} to resume from step {older[-1]}, the previous checkpoint"
                  if older else f"remove {self.dir}/{step} to start again from scratch")
      raise UserError(f"The checkpoint at step {step} cannot be read ({_reason(e)}); "
                      f"{fallback}.") from None
    if abstract_carry is not None:
      return restored["params"], restored.get("opt_state"), restored["carry"]
    return restored["params"], restored.get("opt_state")

  def wait(self):
    """Blocks until the pending save is complete."""
    self._reporting(self.manager.wait_until_finished)
    self._pending = None

  def close(self):
    """Waits for the pending save and closes. A failure already reported is not
    reported again (Orbax would raise it once more)."""
    reported = self._failed
    try:
      if not reported:
        self.wait()
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        if not self._failed:
          raise


def _no_space(e):
  """Whether `e`, or an exception it wraps, is a full disk (Orbax and TensorStore
  re-raise OSError as other types, keeping only its text)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _reason(e):
  """A short reason for a failed restore: the root cause's first line, without
  TensorStore's spec dump (its wrapper's text is the repr of a bound method)."""
  while e.__cause__ is not None:
    e = e.__cause__
  text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  text = re.sub(r'Error opening "\w+" driver: ', "", text.split(" [tensorstore_spec")[0])
  text = (text.strip().splitlines() or [type(e).__name__])[0].rstrip(":")
  return text if len(text) <= 300 else text[:300].rsplit(" ", 1)[0] + " ..."


def abstract(tree, shardings):
  """ShapeDtypeStructs with shardings, the restore target for `tree`'s shape."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
