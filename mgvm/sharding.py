"""Device mesh, shardings and host-local → global batches: one program for every scale.

`jax.jit` over global arrays with `NamedSharding` on a `("data",)` mesh, or a
`("data", "fsdp")` mesh when `config.mesh.fsdp > 1`; no pmap. Each host feeds its own rows with
`jax.make_array_from_process_local_data` (docs/algorithms.md §0.1). With FSDP the batch is split
over both axes and params / optimizer state over `fsdp` by `FSDP_RULES` (big_vision's scheme:
(regex on the parameter path, spec) pairs, first match wins; docs/scale.md).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
# The default rule's name in a rule list: shard the largest axis divisible by the fsdp size.
FSDP = "fsdp"
# (regex searched in the parameter path "encoder/blocks/0/mlp/fc1/kernel", PartitionSpec or FSDP);
# the first match wins, a leaf no rule matches is replicated.
FSDP_RULES: tuple[tuple[str, Any], ...] = ((r".*", FSDP),)
# Leaves smaller than this stay replicated under the FSDP rule (an all-gather of a few KiB costs
# more latency than the memory it saves); 0 shards every divisible leaf.
MIN_SHARD_BYTES = 1 << 20


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


def make_mesh(num_data_devices: int = -1, devices=None, *, fsdp: int = 1) -> Mesh:
  """A `("data",)` mesh over `num_data_devices` devices (-1: all of them) when `fsdp` is 1, else
  a `("data", "fsdp")` mesh of `num_data_devices` x `fsdp` devices (-1: all the devices left).

  Neighbouring devices share an fsdp group (`fsdp` is the inner axis). Built directly from
  `Mesh` so sharding propagation under `jax.jit` is the classic (auto) kind on every jax version.
  """
  devices = list(jax.devices() if devices is None else devices)
  fsdp = int(fsdp or 1)
  if fsdp < 1:
    raise ValueError(f"mesh.fsdp={fsdp} must be >= 1")
  if fsdp == 1:
    n = len(devices) if num_data_devices in (-1, 0, None) else int(num_data_devices)
    if not 1 <= n <= len(devices):
      raise ValueError(f"mesh.data={num_data_devices} but only {len(devices)} devices are visible")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))
  if num_data_devices in (-1, 0, None):
    if len(devices) % fsdp:
      raise ValueError(
        f"mesh.fsdp={fsdp} does not divide the {len(devices)} visible devices; use a divisor "
        f"of {len(devices)} (or set mesh.data so that mesh.data x mesh.fsdp <= {len(devices)})"
      )
    data = len(devices) // fsdp
  else:
    data = int(num_data_devices)
  if data < 1 or data * fsdp > len(devices):
    raise ValueError(
      f"mesh.data={num_data_devices} x mesh.fsdp={fsdp} = {data * fsdp} devices but only "
      f"{len(devices)} are visible"
    )
  grid = np.asarray(devices[: data * fsdp], dtype=object).reshape(data, fsdp)
  return Mesh(grid, (DATA_AXIS, FSDP_AXIS))


def fsdp_size(mesh: Mesh) -> int:
  """Devices on the mesh's `fsdp` axis (1 on a 1-D mesh)."""
  return int(dict(mesh.shape).get(FSDP_AXIS, 1))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_spec(mesh: Mesh) -> P:
  """The batch axis over every mesh axis: `P("data")`, or `P(("data", "fsdp"))`."""
  if FSDP_AXIS in mesh.axis_names:
    return P((DATA_AXIS, FSDP_AXIS))
  return P(DATA_AXIS)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data` (and `fsdp`), the rest replicated."""
  return NamedSharding(mesh, batch_spec(mesh))


def check_batch_size(global_batch_size: int, mesh: Mesh, accum_steps: int = 1) -> int:
  """Returns the per-host batch size; fails clearly when the batch does not divide evenly
  (over the mesh's devices, times `accum_steps` micro-batches)."""
  devices = mesh.devices.size
  shape = " x ".join(f"{k} {v}" for k, v in dict(mesh.shape).items())
  accum_steps = int(accum_steps)
  if accum_steps < 1:
    raise ValueError(f"accum_steps={accum_steps} must be >= 1")
  if accum_steps == 1 and global_batch_size % devices:
    raise ValueError(
      f"batch_size={global_batch_size} is not divisible by the {devices} devices "
      f"of the mesh ({shape}); use a multiple of {devices} (or set config.mesh.data)"
    )
  if global_batch_size % (accum_steps * devices):
    raise ValueError(
      f"batch_size={global_batch_size} is not divisible by accum_steps={accum_steps} x "
      f"{devices} devices of the mesh ({shape}) = {accum_steps * devices}: every micro-batch "
      f"must split evenly over the devices; use a multiple of {accum_steps * devices}"
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


def leaf_spec(
  name: str,
  shape: Sequence[int],
  itemsize: int,
  fsdp: int,
  rules: Sequence[tuple[str, Any]] = FSDP_RULES,
  *,
  min_bytes: int = MIN_SHARD_BYTES,
) -> P:
  """The `PartitionSpec` of one array `name` (path joined by "/") under `rules` on `fsdp` devices.

  The first rule whose regex `re.search`es `name` decides: a `PartitionSpec` is taken as is
  (every axis it shards must divide); `FSDP` shards the largest axis divisible by `fsdp` (the
  first of equal ones) when the array holds at least `min_bytes`, else replicates. No match, or
  `fsdp` 1: replicated.
  """
  shape = tuple(int(d) for d in shape)
  for pattern, rule in rules:
    if not re.search(pattern, name):
      continue
    if isinstance(rule, P):
      if len(rule) > len(shape):
        raise ValueError(f"sharding rule {pattern!r}: {rule} has more axes than {name} {shape}")
      for size, axes in zip(shape, rule):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        if FSDP_AXIS in names and size % fsdp:
          raise ValueError(
            f"sharding rule {pattern!r}: {name} {shape} has an axis of {size}, not divisible "
            f"by mesh.fsdp={fsdp}"
          )
      return rule if fsdp > 1 else P()
    if rule != FSDP:
      raise ValueError(f"sharding rule {pattern!r}: {rule!r} is neither a PartitionSpec nor FSDP")
    if fsdp == 1 or math.prod(shape) * itemsize < min_bytes:
      return P()
    for axis in sorted(range(len(shape)), key=lambda a: (-shape[a], a)):
      if shape[axis] % fsdp == 0:
        return P(*([None] * axis + [FSDP_AXIS]))
    return P()
  return P()


def tree_specs(
  tree: Any,
  fsdp: int,
  rules: Sequence[tuple[str, Any]] = FSDP_RULES,
  *,
  min_bytes: int = MIN_SHARD_BYTES,
) -> Any:
  """`leaf_spec` of every array (or ShapeDtypeStruct) of `tree`, named by its path."""
  from mgvm.train.optim import path_names

  def spec(path, x):
    dtype = np.dtype(getattr(x, "dtype", np.float32))
    return leaf_spec(
      "/".join(path_names(path)), np.shape(x), dtype.itemsize, fsdp, rules, min_bytes=min_bytes
    )

  return jax.tree_util.tree_map_with_path(spec, tree)


def shard_shape(shape: Sequence[int], spec: P, axis_sizes: Mapping[str, int]) -> tuple[int, ...]:
  """The per-device block of an array of `shape` placed with `spec` on a mesh of `axis_sizes`
  (no mesh needed: sizes beyond the visible devices work)."""
  out = list(shape)
  for i, axes in enumerate(spec):
    if axes is None:
      continue
    for axis in (axes,) if isinstance(axes, str) else axes:
      out[i] = -(-out[i] // int(axis_sizes[axis]))
  return tuple(out)


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


def host_rows(tree: Any, mesh) -> Any:
  """This host's rows of every global array of `tree` (an array, tuple, dict...) sharded on the
  batch axis (`sharding.to_global`), as numpy, fetched in one transfer."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    spec = batch_spec(mesh)
    tree = multihost_utils.global_array_to_host_local_array(
      tree, mesh, jax.tree.map(lambda _: spec, tree)
    )
  return jax.tree.map(np.asarray, jax.device_get(tree))
