"""The model's state on a mesh: its structure, logical axes and shardings.

Training, export and inference all start here: `ModelState` builds the
model abstractly (no parameter is allocated), reads the logical axis names
of its parameters, maps them to mesh shardings, and creates fresh parameters
(and optimizer state) directly sharded, never whole on one device.
"""
import jax
import optax
from flax import nnx

from lm_jax import checkpoint, families, parallel


class ModelState:
  """The model's structure (graphdef), its logical axes, and the shardings
  of params and optimizer state on a mesh. Creates them directly sharded."""

  def __init__(self, config, mesh, rule_table, tx=None):
    self.config = config
    abstract_model = nnx.eval_shape(lambda: families.build_model(config.model, rngs=nnx.Rngs(0)))
    self.graphdef, abstract_state = nnx.split(abstract_model)
    self.axes = parallel.logical_axes(abstract_state)
    self.param_shardings = parallel.shardings(self.axes, mesh, rule_table)
    self.abstract_params = checkpoint.abstract(nnx.to_pure_dict(abstract_state),
                                               self.param_shardings)
    self.tx = tx
    if tx is not None:
      abstract_opt = jax.eval_shape(tx.init, self.abstract_params)
      self.opt_shardings = optax.tree_map_params(
          tx, _state_sharding, abstract_opt, self.param_shardings, self.abstract_params,
          transform_non_params=lambda _: parallel.replicated(mesh))
      self.abstract_opt_state = checkpoint.abstract(abstract_opt, self.opt_shardings)

  def model(self, params):
    return nnx.merge(self.graphdef, params)

  def init(self, seed):
    """Fresh params and optimizer state, created sharded (never whole on one device)."""
    def init_fn():
      model = families.build_model(self.config.model, rngs=nnx.Rngs(params=seed))
      params = nnx.to_pure_dict(nnx.state(model))
      return params, self.tx.init(params)
    return jax.jit(init_fn, out_shardings=(self.param_shardings, self.opt_shardings))()


def _state_sharding(leaf, sharding, param):
  """The sharding of an optimizer-state leaf that belongs to `param`: the parameter's
  own when the shapes agree (Adam's moments, Adagrad's sums); for Adafactor's factored
  second moments (the parameter with one axis averaged out) the parameter's sharding
  of the axes kept; replicated for anything else (Adafactor's 1-element stand-ins)."""
  if leaf.shape == param.shape:
    return sharding
  spec = tuple(sharding.spec) + (None,) * (len(param.shape) - len(sharding.spec))
  kept = {spec[:i] + spec[i + 1:] for i in range(len(param.shape))
          if param.shape[:i] + param.shape[i + 1:] == leaf.shape}
  # Two equal dims (a square kernel) leave the axis ambiguous: then replicate the small row.
  return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(
      *(kept.pop() if len(kept) == 1 else ())))
