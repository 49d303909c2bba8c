"""Orbax checkpoints under WORKDIR/checkpoints/<step>/{params,opt_state[,carry]}.

Parameters and optimizer state are separate items, so inference and export
read the parameters alone. `carry` is a recurrent family's LSTM state at the
step (ELMo with data.stateful), saved so that a resumed run continues exactly. Saves are asynchronous; Orbax writes each step to
a temporary folder and renames it when complete, so a killed run never
leaves a half-written checkpoint that would be taken for a good one.
Restoring takes the target shardings, so a checkpoint written on one mesh
or host count loads onto any other.
"""
import os

import jax
import orbax.checkpoint as ocp

from lm_jax.errors import UserError


def directory(workdir):
  return os.path.join(os.path.abspath(workdir), "checkpoints")


class Checkpointer:

  def __init__(self, workdir, *, keep=3, read_only=False):
    """`read_only`: for inference and export (never saves, never deletes)."""
    self.dir = directory(workdir)
    if read_only and not os.path.isdir(self.dir):
      raise UserError(f"{workdir} has no checkpoints/ folder; train there first with lm_jax.main.")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           enable_async_checkpointing=not read_only)
    self.manager = ocp.CheckpointManager(self.dir, options=options,
                                         item_names=("params", "opt_state", "carry"))

  def steps(self):
    return sorted(self.manager.all_steps())

  def latest_step(self):
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step, params, opt_state, carry=None):
    """Starts an asynchronous save of `step`."""
    items = dict(params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state))
    if carry is not None:
      items["carry"] = ocp.args.StandardSave(carry)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

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
      reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
      raise UserError(f"The checkpoint at step {step} cannot be read ({reason}); {fallback}.") from None
    if abstract_carry is not None:
      return restored["params"], restored.get("opt_state"), restored["carry"]
    return restored["params"], restored.get("opt_state")

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract(tree, shardings):
  """ShapeDtypeStructs with shardings, the restore target for `tree`'s shape."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
