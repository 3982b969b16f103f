"""The train state, created already sharded (eval_shape → shardings → jit init).

The train state is a plain pytree, `{"step", "params", "opt_state", "rng"}`: `params` is the
`nnx.State` of the model's `nnx.Param`s, `rng` the raw key data (uint32, so Orbax can save it).
On a `("data", "fsdp")` mesh the params are sharded over `fsdp` by `mgvm.sharding.FSDP_RULES`
and every optimizer-state leaf that mirrors a param (AdamW's mu and nu) exactly like it
(`state_specs`); on a 1-D mesh everything is replicated. `memory_per_device` counts the bytes
each device holds without allocating anything (docs/scale.md, "Memory per device").
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mgvm import sharding as sharding_lib
from mgvm.train.optim import path_names
from mgvm.weights.params import merge_params

State = dict[str, Any]


def num_layers(model: nnx.Module) -> int:
  encoder = model.encoder
  return len(encoder.blocks)


def state_specs(
  state: Any,
  fsdp: int,
  rules: Sequence[tuple[str, Any]] = sharding_lib.FSDP_RULES,
  *,
  min_bytes: int = sharding_lib.MIN_SHARD_BYTES,
) -> Any:
  """`PartitionSpec`s of a train state (arrays or ShapeDtypeStructs) on `fsdp` devices.

  `state["params"]` by `rules` on the param path ("encoder/blocks/0/mlp/fc1/kernel"); every
  other leaf whose path ends with a param's path and has its shape (optax's mu / nu) takes that
  param's spec, so optimizer state is sharded exactly as the params; the rest (step, counts,
  rng) is replicated.
  """
  params = state["params"]
  specs = sharding_lib.tree_specs(params, fsdp, rules, min_bytes=min_bytes)
  by_path = {
    path_names(path): (tuple(np.shape(x)), spec)
    for (path, x), spec in zip(
      jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(specs)
    )
  }

  def spec(path, x):
    names = path_names(path)
    for start in range(len(names)):
      hit = by_path.get(names[start:])
      if hit is not None and hit[0] == tuple(np.shape(x)):
        return hit[1]
    return P()

  rest = {k: v for k, v in state.items() if k != "params"}
  out = dict(jax.tree_util.tree_map_with_path(spec, rest), params=specs)
  return {k: out[k] for k in state}


def plan(
  model_fn: Callable[[], nnx.Module],
  tx: optax.GradientTransformation,
  mesh: Mesh,
  seed: int,
  *,
  init_params: Any = None,
  rules: Sequence[tuple[str, Any]] = sharding_lib.FSDP_RULES,
  min_shard_bytes: int = sharding_lib.MIN_SHARD_BYTES,
) -> tuple[nnx.GraphDef, Any, Any, Callable[[], State]]:
  """eval_shape → shardings; returns (graphdef, abstract_state, shardings, init).

  `init()` builds the state directly on its shardings (one jitted call); a resumed run
  restores into `abstract_state` instead and never materialises a fresh state.
  `init_params` (an `nnx.State` or pure dict matching the model's params) replaces the fresh
  parameters before the optimizer state is created (fine-tuning from a pre-trained encoder).
  On a mesh with an `fsdp` axis params and optimizer state are sharded by `rules`
  (`state_specs`); otherwise replicated.
  """
  graphdef, _ = nnx.split(nnx.eval_shape(model_fn), nnx.Param)

  def init_state() -> State:
    params = nnx.state(model_fn(), nnx.Param)
    if init_params is not None:
      params = merge_params(params, init_params)
    return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "opt_state": tx.init(params),
      "rng": jax.random.key_data(jax.random.key(seed)),
    }

  shapes = jax.eval_shape(init_state)
  fsdp = sharding_lib.fsdp_size(mesh)
  if fsdp == 1:
    shardings = sharding_lib.replicate_tree(shapes, mesh)
  else:
    specs = state_specs(shapes, fsdp, rules, min_bytes=min_shard_bytes)
    shardings = jax.tree.map(lambda _, p: NamedSharding(mesh, p), shapes, specs)
  abstract_state = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings
  )
  return graphdef, abstract_state, shardings, jax.jit(init_state, out_shardings=shardings)


def create(
  model_fn: Callable[[], nnx.Module],
  tx: optax.GradientTransformation,
  mesh: Mesh,
  seed: int,
  *,
  init_params: Any = None,
  **sharding_kwargs,
) -> tuple[nnx.GraphDef, State, Any]:
  """A fresh train state on its shardings: (graphdef, state, shardings); `sharding_kwargs`
  (`rules`, `min_shard_bytes`) as in `plan`."""
  graphdef, _, shardings, init = plan(
    model_fn, tx, mesh, seed, init_params=init_params, **sharding_kwargs
  )
  return graphdef, init(), shardings


def tree_bytes_per_device(tree: Any, specs: Any, fsdp: int) -> int:
  """Bytes one device holds of `tree` (arrays or ShapeDtypeStructs) placed with `specs` when the
  `fsdp` axis has `fsdp` devices (the data axis replicates; no mesh is built)."""
  sizes = {sharding_lib.DATA_AXIS: 1, sharding_lib.FSDP_AXIS: fsdp}
  total = 0
  for x, spec in zip(jax.tree.leaves(tree), jax.tree.leaves(specs)):
    block = sharding_lib.shard_shape(np.shape(x), spec, sizes)
    total += int(np.prod(block, dtype=np.int64)) * np.dtype(x.dtype).itemsize
  return total


def memory_per_device(
  model_fn: Callable[[], nnx.Module],
  fsdp: int | Sequence[int],
  *,
  tx: optax.GradientTransformation | None = None,
  rules: Sequence[tuple[str, Any]] = sharding_lib.FSDP_RULES,
  min_bytes: int = sharding_lib.MIN_SHARD_BYTES,
) -> dict[str, int] | list[dict[str, int]]:
  """{"params", "opt_state", "total", "num_params"}: bytes per device of the model's params and
  optimizer state (default AdamW: mu and nu in the params' dtype plus an int32 count) under the
  FSDP rules on `fsdp` devices (a list of them: one dict each). Shapes come from
  `nnx.eval_shape`: nothing is allocated. Gradients (one more params-sized tree, sharded alike)
  and activations are not counted.
  """
  params = nnx.state(nnx.eval_shape(model_fn), nnx.Param)
  tx = optax.adamw(1e-3) if tx is None else tx
  shapes = {"params": params, "opt_state": jax.eval_shape(tx.init, params)}
  num_params = sum(int(np.prod(x.shape, dtype=np.int64)) for x in jax.tree.leaves(params))
  results = []
  for f in [fsdp] if isinstance(fsdp, int) else fsdp:
    specs = state_specs(shapes, f, rules, min_bytes=min_bytes)
    out = {k: tree_bytes_per_device(shapes[k], specs[k], f) for k in shapes}
    out.update(total=out["params"] + out["opt_state"], num_params=num_params)
    results.append(out)
  return results[0] if isinstance(fsdp, int) else results


# VideoMAE v2's ViT-g (`pretrain_videomae_giant_patch14_224`): MLP 6144 = 1408 x 48/11, patch 14,
# decoder 512 wide with 8 heads, 4 blocks as in its scripts.
VIT_G = dict(
  dim=1408,
  depth=40,
  num_heads=16,
  mlp_ratio=48 / 11,
  tubelet=(2, 14, 14),
  decoder_dim=512,
  decoder_heads=8,
  decoder_depth=4,
)


def memory_table(
  sizes: Sequence[str] = ("B", "L", "H", "g"), fsdp: Sequence[int] = (1, 8, 16)
) -> str:
  """docs/scale.md's "Memory per device" table: params + AdamW state (float32) per device, for
  the VideoMAE pre-training model and the 400-class classifier at 16 x 224."""
  from mgvm import models

  def builders(size):
    g = size == "g"
    enc = {k: VIT_G[k] for k in ("dim", "depth", "num_heads", "mlp_ratio", "tubelet")} if g else {}
    dec = {k: VIT_G[k] for k in ("decoder_dim", "decoder_heads", "decoder_depth")} if g else {}
    name = None if g else size
    kw = dict(num_frames=16, image_size=224)
    return {
      "pre-training": lambda: models.VideoMAE(name, **enc, **dec, **kw, rngs=nnx.Rngs(0)),
      "classifier": lambda: models.VideoClassifier(
        name, num_classes=400, **enc, **kw, rngs=nnx.Rngs(0)
      ),
    }

  gib = float(1 << 30)
  head = "| model | size | params | " + " | ".join(f"fsdp = {f}" for f in fsdp) + " |"
  rows = [head, "|---|---|---:|" + "---:|" * len(fsdp)]
  for kind in ("pre-training", "classifier"):
    for size in sizes:
      fn = builders(size)[kind]
      counts = memory_per_device(fn, list(fsdp))
      cells = " | ".join(f"{c['total'] / gib:.2f} GiB" for c in counts)
      rows.append(f"| {kind} | ViT-{size} | {counts[0]['num_params'] / 1e6:.1f} M | {cells} |")
  return "\n".join(rows)
