"""Device mesh, logical-axis sharding and multi-host start-up.

The mesh has three axes: `data` (pure data parallelism), `fsdp` (data
parallelism with parameters and optimizer state sharded) and `tensor`
(attention heads and MLP split). The config's `mesh.rules` table maps the
models' logical axis names onto them; nothing else spells a PartitionSpec.
"""
import contextlib
import math

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lm_jax.errors import UserError
from lm_jax.models import layers

AXES = ("data", "fsdp", "tensor")


def rules(mesh_cfg):
  """The logical -> mesh axis table as a dict."""
  return {name: (tuple(axes) if isinstance(axes, list) else axes)
          for name, axes in mesh_cfg.rules}


def mesh_shape(mesh_cfg, num_devices):
  """Per-slice (data, fsdp, tensor) sizes, with -1 resolved."""
  dcn = mesh_cfg.dcn_data * mesh_cfg.dcn_fsdp
  if num_devices % dcn:
    raise UserError(f"mesh.dcn_data x mesh.dcn_fsdp = {dcn} does not divide the "
                    f"{num_devices} devices; set them to the number of slices.")
  per_slice = num_devices // dcn
  sizes = [mesh_cfg[a] for a in AXES]
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if per_slice % known:
      raise UserError(f"mesh {dict(zip(AXES, sizes))} cannot fill {per_slice} devices per slice: "
                      f"{known} does not divide {per_slice}; change mesh.data/fsdp/tensor.")
    sizes[sizes.index(-1)] = per_slice // known
  if math.prod(sizes) != per_slice:
    raise UserError(f"mesh data x fsdp x tensor = {' x '.join(map(str, sizes))} = "
                    f"{math.prod(sizes)} does not match the {per_slice} devices per slice; "
                    "make the product equal or set one of them to -1.")
  return tuple(sizes)


def make_mesh(mesh_cfg, devices=None):
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_cfg, len(devices))
  dcn = (mesh_cfg.dcn_data, mesh_cfg.dcn_fsdp, 1)
  if math.prod(dcn) > 1:
    grid = mesh_utils.create_hybrid_device_mesh(shape, dcn, devices)
  else:
    try:
      grid = mesh_utils.create_device_mesh(shape, devices)
    except (AssertionError, NotImplementedError, ValueError):
      grid = np.array(devices).reshape(shape)  # no topology to honour (CPU)
  return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def logical_axes(abstract_state):
  """Pure dict of each parameter's logical axes, from the model's metadata."""
  axes = jax.tree.map(lambda v: v.get_metadata()["logical_axes"], abstract_state,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(axes)


def shardings(axes_tree, mesh, rule_table):
  """NamedSharding for every leaf of a pure dict of logical axes."""
  return jax.tree.map(lambda a: NamedSharding(mesh, layers.logical_to_spec(a, rule_table)),
                      axes_tree, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh, rule_table):
  """Leading (batch) dimension split over the data-parallel axes."""
  return NamedSharding(mesh, PartitionSpec(rule_table.get("batch")))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def host_to_global(local_batch, mesh, rule_table):
  """This process's share of a batch -> global jax.Arrays sharded over the mesh."""
  sharding = batch_sharding(mesh, rule_table)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)


@contextlib.contextmanager
def activate(mesh, rule_table):
  """The mesh and the logical-axis rules, for tracing and running steps."""
  with jax.set_mesh(mesh), layers.axis_rules(rule_table):
    yield
