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
          tx, lambda _, s: s, abstract_opt, self.param_shardings,
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
