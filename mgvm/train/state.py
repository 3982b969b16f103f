"""The train state, created already sharded (eval_shape → shardings → jit init).

The train state is a plain pytree, `{"step", "params", "opt_state", "rng"}`: `params` is the
`nnx.State` of the model's `nnx.Param`s, `rng` the raw key data (uint32, so Orbax can save it).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from mgvm import sharding as sharding_lib
from mgvm.weights.params import merge_params

State = dict[str, Any]


def num_layers(model: nnx.Module) -> int:
  encoder = model.encoder
  return len(encoder.blocks)


def plan(
  model_fn: Callable[[], nnx.Module],
  tx: optax.GradientTransformation,
  mesh: Mesh,
  seed: int,
  *,
  init_params: Any = None,
) -> tuple[nnx.GraphDef, Any, Any, Callable[[], State]]:
  """eval_shape → shardings; returns (graphdef, abstract_state, shardings, init).

  `init()` builds the state directly on its shardings (one jitted call); a resumed run
  restores into `abstract_state` instead and never materialises a fresh state.
  `init_params` (an `nnx.State` or pure dict matching the model's params) replaces the fresh
  parameters before the optimizer state is created (fine-tuning from a pre-trained encoder).
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
  shardings = sharding_lib.replicate_tree(shapes, mesh)
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
) -> tuple[nnx.GraphDef, State, Any]:
  """A fresh train state on its shardings: (graphdef, state, shardings)."""
  graphdef, _, shardings, init = plan(model_fn, tx, mesh, seed, init_params=init_params)
  return graphdef, init(), shardings
