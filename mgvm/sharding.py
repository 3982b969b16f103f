"""Device mesh, shardings and host-local → global batches: one program for every scale.

`jax.jit` over global arrays with `NamedSharding` on a `("data",)` mesh, no pmap; each host
feeds its own rows with `jax.make_array_from_process_local_data` (docs/algorithms.md §0.1).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed() -> None:
  """Calls `jax.distributed.initialize()` when the launcher describes a multi-process run.

  Cloud TPU pods and SLURM/Open MPI launches are detected by jax itself; elsewhere (several GPU
  machines, or processes on one machine) give every process `JAX_COORDINATOR_ADDRESS`
  (host:port of process 0), `JAX_NUM_PROCESSES` and its own `JAX_PROCESS_ID`. A plain
  single-process run (no coordinator in the environment) is left alone. CPU processes exchange
  data through gloo.
  """
  import os

  markers = (
    "JAX_COORDINATOR_ADDRESS",
    "COORDINATOR_ADDRESS",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
  )
  multi = any(os.environ.get(m) for m in markers)
  if os.environ.get("SLURM_NTASKS") == "1" or os.environ.get("OMPI_COMM_WORLD_SIZE") == "1":
    multi = False
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if hosts and "," not in hosts:
    multi = False
  if os.environ.get("JAX_NUM_PROCESSES") == "1":
    multi = False
  if not multi or jax.distributed.is_initialized():
    return
  kwargs = {}
  for name, key in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
    if os.environ.get(key):
      try:
        kwargs[name] = int(os.environ[key])
      except ValueError:
        raise ValueError(f"{key}={os.environ[key]!r} is not an integer") from None
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def make_mesh(num_data_devices: int = -1, devices=None) -> Mesh:
  """A 1-D `("data",)` mesh over `num_data_devices` devices (-1: all of them).

  Built directly from `Mesh` so sharding propagation under `jax.jit` is the classic
  (auto) kind on every jax version.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices) if num_data_devices in (-1, 0, None) else int(num_data_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"mesh.data={num_data_devices} but only {len(devices)} devices are visible")
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-host batch size; fails clearly when the batch does not divide evenly."""
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(
      f"batch_size={global_batch_size} is not divisible by the {devices} devices "
      f"of the mesh; use a multiple of {devices} (or set config.mesh.data)"
    )
  hosts = jax.process_count()
  if global_batch_size % hosts:
    raise ValueError(f"batch_size={global_batch_size} is not divisible by {hosts} processes")
  return global_batch_size // hosts


def to_global(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """This host's numpy batch → global `jax.Array`s sharded on `data` (strings are dropped)."""
  sharding = batch_sharding(mesh)
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "SUO":
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out


def replicate_tree(tree: Any, mesh: Mesh) -> Any:
  """Shardings for a (parameter / optimizer) pytree: replicated on every device (pure data parallel)."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda _: sharding, tree)


def gather_hosts(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Every host's `rows` (any number each, same keys and dtypes) concatenated in host order, on
  every host; the rows themselves on one host."""
  if jax.process_count() == 1:
    return rows
  from jax.experimental import multihost_utils

  n = len(next(iter(rows.values())))
  counts = np.asarray(multihost_utils.process_allgather(np.asarray([n], np.int32))).reshape(-1)
  top = max(int(counts.max()), 1)
  padded = {
    k: np.concatenate([v, np.zeros((top - n,) + v.shape[1:], v.dtype)]) for k, v in rows.items()
  }
  gathered = multihost_utils.process_allgather(padded)  # {key: [hosts, top, ...]}
  return {
    k: np.concatenate([np.asarray(g)[h, :c] for h, c in enumerate(counts)]).astype(rows[k].dtype)
    for k, g in gathered.items()
  }


def host_rows(x: jax.Array, mesh) -> np.ndarray:
  """This host's rows of a global array sharded on the batch axis (`sharding.to_global`)."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.global_array_to_host_local_array(x, mesh, P(DATA_AXIS)))
