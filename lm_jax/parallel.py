"""Device mesh, logical-axis sharding and multi-host start-up.

The mesh has three axes: `data` (pure data parallelism), `fsdp` (data
parallelism with parameters and optimizer state sharded) and `tensor`
(attention heads and MLP split). The config's `mesh.rules` table maps the
models' logical axis names onto them; nothing else spells a PartitionSpec.

Several processes (hosts) join one run through `jax.distributed`; every
process then runs the same program on its share of the global batch.
"""
import contextlib
import contextvars
import math
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lm_jax.errors import UserError

AXES = ("data", "fsdp", "tensor")


def rules(mesh_cfg):
  """The logical -> mesh axis table as a dict."""
  return {name: (tuple(axes) if isinstance(axes, list) else axes)
          for name, axes in mesh_cfg.rules}


def mesh_shape(mesh_cfg, num_devices):
  """Per-slice (data, fsdp, tensor) sizes, with -1 resolved."""
  dcn = mesh_cfg.dcn_data * mesh_cfg.dcn_fsdp
  if dcn < 1 or num_devices % dcn:
    raise UserError(f"mesh.dcn_data x mesh.dcn_fsdp = {mesh_cfg.dcn_data} x {mesh_cfg.dcn_fsdp} "
                    f"does not divide the {num_devices} devices; set them to the number of "
                    "slices (or nodes).")
  per_slice = num_devices // dcn
  where = f"the {per_slice} device{'s' * (per_slice != 1)}" + (" per slice" if dcn > 1 else "")
  sizes = [mesh_cfg[a] for a in AXES]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise UserError(f"mesh data/fsdp/tensor = {sizes}: use positive sizes and at most one -1.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if per_slice % known:
      raise UserError(f"mesh data x fsdp x tensor = {' x '.join(map(str, sizes))} cannot fill "
                      f"{where}: {known} does not divide {per_slice}; change mesh.data/fsdp/tensor.")
    sizes[sizes.index(-1)] = per_slice // known
  if math.prod(sizes) != per_slice:
    raise UserError(f"mesh data x fsdp x tensor = {' x '.join(map(str, sizes))} = "
                    f"{math.prod(sizes)} does not match {where}; make the product "
                    f"{per_slice} or set one of them to -1.")
  return tuple(sizes)


def make_mesh(mesh_cfg, devices=None):
  """The (data, fsdp, tensor) mesh; with dcn_* > 1, slices (or nodes) outermost."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_cfg, len(devices))
  dcn = (mesh_cfg.dcn_data, mesh_cfg.dcn_fsdp, 1)
  if math.prod(dcn) > 1:
    try:  # TPU slices (slice_index), else one granule per process
      grid = mesh_utils.create_hybrid_device_mesh(
          shape, dcn, devices, process_is_granule=not hasattr(devices[0], "slice_index"))
    except ValueError:  # e.g. one process per GPU: consecutive devices form a node
      grid = (np.array(devices).reshape(dcn[0], dcn[1], *shape).transpose(0, 2, 1, 3, 4)
              .reshape(dcn[0] * shape[0], dcn[1] * shape[1], shape[2]))
  else:
    try:
      grid = mesh_utils.create_device_mesh(shape, devices)
    except (AssertionError, NotImplementedError, ValueError):
      grid = np.array(devices).reshape(shape)  # no topology to honour (CPU)
  return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def check_batch_split(mesh, rule_table):
  """Each process must hold its own 1/process_count of the batch rows, since
  each reads only that share (data/pipeline.py)."""
  count = jax.process_count()
  if count == 1:
    return
  rows = count * math.prod(mesh.shape[a] for a in AXES)
  index_map = batch_sharding(mesh, rule_table).devices_indices_map((rows,))
  per_process = {}
  for device, index in index_map.items():
    per_process.setdefault(device.process_index, set()).add(index[0].indices(rows)[:2])
  starts = {min(b) for b in per_process.values()}
  if len(starts) != count:
    raise UserError(f"The mesh {dict(mesh.shape)} gives processes the same batch rows (a model "
                    f"axis spans hosts); make mesh.data x mesh.fsdp a multiple of the {count} "
                    "processes and keep mesh.tensor within one host.")


def layout(mesh):
  """Who is who: this process, its devices and the mesh, in one line."""
  local = jax.local_devices()
  ids = ",".join(str(d.id) for d in local)
  return (f"process {jax.process_index()}/{jax.process_count()} on {socket.gethostname()}: "
          f"{len(local)} local {local[0].platform} devices [{ids}] of {jax.device_count()}; "
          f"mesh {dict(mesh.shape)}")


# The active logical-axis -> mesh-axis rules (set by `activate` while tracing).
_AXIS_RULES = contextvars.ContextVar("axis_rules", default=None)


@contextlib.contextmanager
def axis_rules(rules):
  """Activates `rules` (dict: logical name -> mesh axis / tuple / None)."""
  token = _AXIS_RULES.set(dict(rules))
  try:
    yield
  finally:
    _AXIS_RULES.reset(token)


def logical_to_spec(axes, rules):
  """Logical axis names -> PartitionSpec, given a rules dict."""
  return jax.sharding.PartitionSpec(*(rules.get(a) if a else None for a in axes))


def constrain(x, axes):
  """Sharding constraint on an activation, by logical axis names."""
  rules = _AXIS_RULES.get()
  if rules is None:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(axes, rules))


def logical_axes(abstract_state):
  """Pure dict of each parameter's logical axes, from the model's metadata."""
  axes = jax.tree.map(lambda v: v.get_metadata()["logical_axes"], abstract_state,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(axes)


def shardings(axes_tree, mesh, rule_table):
  """NamedSharding for every leaf of a pure dict of logical axes."""
  return jax.tree.map(lambda a: NamedSharding(mesh, logical_to_spec(a, rule_table)),
                      axes_tree, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh, rule_table):
  """Leading (batch) dimension split over the data-parallel axes."""
  return NamedSharding(mesh, PartitionSpec(rule_table.get("batch")))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def process_slice(x):
  """This process's rows of a global batch built whole in every process."""
  n = len(x) // jax.process_count()
  return x[jax.process_index() * n:(jax.process_index() + 1) * n]


def host_to_global(local_batch, mesh, rule_table):
  """This process's share of a batch -> global jax.Arrays sharded over the mesh."""
  sharding = batch_sharding(mesh, rule_table)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)


@contextlib.contextmanager
def activate(mesh, rule_table):
  """The mesh and the logical-axis rules, for tracing and running steps."""
  with jax.set_mesh(mesh), axis_rules(rule_table):
    yield


# ---------------------------------------------------------------------------
# Several processes: jax.distributed, with a clear message when one is missing
# ---------------------------------------------------------------------------

def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None,
                           timeout_s=300):
  """Joins the processes of a multi-host run; a no-op for a single process.

  With `coordinator_address`, `num_processes` and `process_id` given (flags
  or JAX_* environment variables) they are used as they are. Otherwise
  JAX's cluster auto-detection (TPU VM pod, SLURM, Open MPI, ...) decides
  whether there are other processes. If not every process has joined after
  `timeout_s` seconds, this one exits with a sentence naming who is missing.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over gloo
  explicit = (coordinator_address, num_processes, process_id)
  if all(v is None for v in explicit):
    return _join_detected_cluster(timeout_s)
  if any(v is None for v in explicit):
    raise UserError("--coordinator_address, --num_processes and --process_id go together; "
                    "give all three (or none, on a TPU VM pod or under SLURM).")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} is not in [0, --num_processes={num_processes}); "
                    "number the processes 0, 1, ..., num_processes - 1.")
  if num_processes == 1:
    return
  host, port = _parse_address(coordinator_address)
  if process_id == 0:
    for p in (port, port + 1):
      _check_port_free(p, coordinator_address)
  roll_call = _RollCall(host, port + 1, num_processes, process_id)
  watchdog = threading.Timer(timeout_s, lambda: _exit_with(roll_call.verdict(timeout_s)))
  watchdog.daemon = True
  watchdog.start()
  # JAX's own deadline comes later, so that ours (which says who is missing) fires first.
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=int(timeout_s) + 30)
  watchdog.cancel()
  roll_call.close()


def _join_detected_cluster(timeout_s):
  """jax.distributed.initialize() with JAX's cluster detection, if it finds one."""
  watchdog = threading.Timer(timeout_s, lambda: _exit_with(
      f"Not all processes of the cluster joined within {timeout_s:.0f} s (this is "
      f"{_cluster_task_name()}); check that every host or task started the same command, "
      "or raise --initialization_timeout."))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(initialization_timeout=int(timeout_s) + 30)
  except ValueError as e:
    if "coordinator_address" not in str(e):
      raise UserError(f"Joining the cluster failed ({e}); check the launcher's settings.") from None
    # No cluster environment found: a single process.
  finally:
    watchdog.cancel()


def _cluster_task_name():
  for env, name in (("SLURM_PROCID", "SLURM task"), ("TPU_WORKER_ID", "TPU worker"),
                    ("OMPI_COMM_WORLD_RANK", "MPI rank")):
    if env in os.environ:
      return f"{name} {os.environ[env]}"
  return f"host {socket.gethostname()}"


def _parse_address(address):
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
    raise UserError(f"--coordinator_address={address} is not HOST:PORT; give process 0's host "
                    "name or IP and a free port, e.g. 10.0.0.1:8476.")
  host = host.strip("[]")
  try:
    socket.getaddrinfo(host, int(port))
  except OSError:
    raise UserError(f"The coordinator host {host!r} in --coordinator_address={address} cannot "
                    "be resolved; give process 0's host name or IP address.") from None
  return host, int(port)


def _check_port_free(port, address):
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    try:
      s.bind(("", port))
    except OSError:
      raise UserError(f"Port {port} is already in use on this host, so process 0 cannot serve "
                      f"--coordinator_address={address} (it needs that port and the next); "
                      "pick another port.") from None


def _exit_with(message):
  """Ends the process from the watchdog thread: one sentence, status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(2)


class _RollCall:
  """Which processes have started, for the timeout message only.

  JAX's coordinator waits for every process but cannot say which one is
  missing. Process 0 therefore listens on the port after the coordinator's;
  the others report their id there and receive process 0's verdict.
  """

  def __init__(self, host, port, num_processes, process_id):
    self.address, self.n, self.id = (host, port), num_processes, process_id
    self.seen, self.clients = {process_id}, []
    self.reached, self.reply = False, None
    self.closed = threading.Event()
    self.lock = threading.Lock()
    if process_id == 0:
      self.sock = socket.create_server(("", port))
      self.sock.settimeout(0.2)
      target = self._serve
    else:
      self.sock = None
      target = self._report
    threading.Thread(target=target, daemon=True).start()

  def _serve(self):
    while not self.closed.is_set():
      try:
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        line = conn.makefile().readline().strip()
      except OSError:
        continue
      if line.isdigit():
        with self.lock:
          self.seen.add(int(line))
          self.clients.append(conn)

  def _report(self):
    while not self.closed.is_set():
      try:
        with socket.create_connection(self.address, timeout=1) as conn:
          conn.sendall(f"{self.id}\n".encode())
          self.reached = True
          conn.settimeout(None)
          self.reply = conn.makefile().readline().strip() or None
        return
      except OSError:
        if self.reached:
          return
        time.sleep(0.2)

  def missing(self):
    with self.lock:
      return sorted(set(range(self.n)) - self.seen)

  def verdict(self, timeout_s):
    """The sentence this process exits with when the others did not all join."""
    if self.id == 0:
      message = (f"{_name(self.missing())} of {self.n} never joined within {timeout_s:.0f} s; "
                 "start it with the same --coordinator_address and --num_processes, or raise "
                 "--initialization_timeout.")
      with self.lock:
        for conn in self.clients:
          try:
            conn.sendall((message + "\n").encode())
          except OSError:
            pass
      return message
    if not self.reached:
      return (f"Process 0 (the coordinator at {self.address[0]}:{self.address[1] - 1}) could not "
              f"be reached within {timeout_s:.0f} s; start it, or fix --coordinator_address.")
    for _ in range(20):  # process 0's verdict names the missing processes
      if self.reply:
        return self.reply
      time.sleep(0.1)
    return (f"Not all {self.n} processes joined within {timeout_s:.0f} s; process 0's "
            "log names the missing ones.")

  def close(self):
    self.closed.set()
    if self.sock is not None:
      self.sock.close()
    with self.lock:
      for conn in self.clients:
        conn.close()


def _name(ids):
  if len(ids) == 1:
    return f"Process {ids[0]}"
  return "Processes " + ", ".join(map(str, ids[:-1])) + f" and {ids[-1]}"
