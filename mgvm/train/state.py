"""Models from configs and the train state, created already sharded (eval_shape → shardings → jit init).

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

from mgvm import models
from mgvm.train import sharding as sharding_lib

State = dict[str, Any]


def _custom_sizes(mc, keys) -> dict[str, int | None]:
  return {k: mc[k] or None for k in keys}


def build_model(config, *, num_classes: int | None = None, seed: int | None = None) -> nnx.Module:
  """`VideoMAE` for `config.task == "pretrain"`, `VideoClassifier` for "finetune", `EVAD` for
  "detect"."""
  mc = config.model
  seed = config.seed if seed is None else seed
  common = dict(num_frames=config.num_frames, image_size=config.image_size,
                tubelet=tuple(int(v) for v in mc.get("tubelet", (2, 16, 16))),
                drop_path_rate=mc.drop_path_rate, dtype=jnp.dtype(mc.dtype), rngs=nnx.Rngs(seed))
  if config.task == "pretrain":
    sizes = _custom_sizes(mc, ("dim", "depth", "num_heads", "decoder_dim", "decoder_depth",
                               "decoder_heads"))
    return models.VideoMAE(mc.size or None, **sizes, **common)
  if config.task == "finetune":
    if not num_classes:
      raise ValueError("a classifier needs num_classes (config.num_classes or the data set's)")
    sizes = _custom_sizes(mc, ("dim", "depth", "num_heads"))
    return models.VideoClassifier(mc.size or None, num_classes=num_classes,
                                  fc_drop_rate=mc.fc_drop_rate, **sizes, **common)
  if config.task == "detect":
    if not num_classes:
      raise ValueError("a detector needs num_classes (config.num_classes or the data set's)")
    return build_detector(config, num_classes, common)
  raise ValueError(f"config.task must be 'pretrain', 'finetune' or 'detect', got {config.task!r}")


def build_detector(config, num_classes: int, common: dict) -> nnx.Module:
  """`EVAD` from `config.model` (encoder) and `config.evad` (pruning, localizer, decoder)."""
  from mgvm.models.evad import EVAD
  from mgvm.models import ktp
  mc, e = config.model, config.evad
  sizes = _custom_sizes(mc, ("dim", "depth", "num_heads"))
  depth = sizes["depth"] or models.SIZES[mc.size].depth
  blocks = tuple(e.prune_blocks) or ktp.default_prune_blocks(depth)
  keep_rates = {int(b): float(e.keep_rate) for b in blocks} if e.keep_rate < 1.0 else {}
  localizer = dict(dim=e.localizer_dim, num_proposals=e.num_proposals, num_stages=e.num_stages,
                   num_heads=e.localizer_heads, dynamic_dim=e.dynamic_dim, ffn_dim=e.ffn_dim)
  return EVAD(mc.size or None, num_classes=num_classes, **sizes, **common, keep_rates=keep_rates,
              enhanced_weight=e.enhanced_weight, feature_blocks=tuple(e.feature_blocks) or None,
              decoder_dim=e.decoder_dim or None, decoder_depth=e.decoder_depth or None,
              decoder_heads=e.decoder_heads or None,
              decoder_drop_path_rate=e.decoder_drop_path_rate, action_hidden=e.action_hidden,
              roi_extension=tuple(e.roi_extension), official_order=e.official_order,
              localizer=localizer)


def num_layers(model: nnx.Module) -> int:
  encoder = model.encoder
  return len(encoder.blocks)


def plan(model_fn: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh: Mesh,
         seed: int, *, init_params: Any = None) -> tuple[nnx.GraphDef, Any, Any, Callable[[], State]]:
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
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
            "rng": jax.random.key_data(jax.random.key(seed))}

  shapes = jax.eval_shape(init_state)
  shardings = sharding_lib.replicate_tree(shapes, mesh)
  abstract_state = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)
  return graphdef, abstract_state, shardings, jax.jit(init_state, out_shardings=shardings)


def create(model_fn: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh: Mesh,
           seed: int, *, init_params: Any = None) -> tuple[nnx.GraphDef, State, Any]:
  """A fresh train state on its shardings: (graphdef, state, shardings)."""
  graphdef, _, shardings, init = plan(model_fn, tx, mesh, seed, init_params=init_params)
  return graphdef, init(), shardings


def merge_params(params: nnx.State, update: Any) -> nnx.State:
  """`params` with the leaves that `update` (a possibly partial pure dict) holds swapped in."""
  pure = params.to_pure_dict()
  new = update.to_pure_dict() if isinstance(update, nnx.State) else update

  def replace(path, old):
    value = new
    for key in path:
      key = getattr(key, "key", getattr(key, "idx", key))
      if not isinstance(value, dict) or (key not in value and str(key) not in value):
        return old
      value = value[key] if key in value else value[str(key)]
    return jnp.asarray(value, old.dtype)

  merged = jax.tree_util.tree_map_with_path(replace, pure)
  params = jax.tree.map(lambda x: x, params)
  params.replace_by_pure_dict(merged)
  return params


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def encoder_from_pretrained(params: nnx.State, pretrained: dict[str, Any],
                            log: Callable[[str], None] = print) -> dict[str, Any]:
  """Every `encoder.*` leaf of the classifier, taken from a pre-trained model (a partial pure dict).

  `pretrained` is a pure dict of a `VideoMAE` (or classifier) parameter tree. Leaves the
  classifier has no use for (the decoder, the encoder's final norm when mean pooling) are
  skipped and named in the log; a shape mismatch raises `CheckpointMismatchError` naming
  every parameter that differs.
  """
  from mgvm.models.load import CheckpointMismatchError
  mine = params.to_pure_dict()
  theirs = _flatten(pretrained)
  flat_mine = _flatten(mine)
  wanted = [k for k in flat_mine if k.startswith("encoder.")]
  # A classifier has no final encoder norm (it pools, then fc_norm): a model that has one (MAE,
  # EVAD) keeps it freshly initialised (identity LayerNorm) when starting from a classifier.
  fresh_norm = [k for k in wanted if k.startswith("encoder.norm.") and k not in theirs]
  wanted = [k for k in wanted if k not in fresh_norm]
  missing = [k for k in wanted if k not in theirs]
  if missing:
    raise CheckpointMismatchError(
        f"the pre-trained params lack {len(missing)} encoder parameters: {missing[:8]}")
  bad = [f"{k}: model {tuple(flat_mine[k].shape)} vs checkpoint {tuple(theirs[k].shape)}"
         for k in wanted if tuple(flat_mine[k].shape) != tuple(theirs[k].shape)]
  if bad:
    raise CheckpointMismatchError("pre-trained encoder does not fit the model:\n  " + "\n  ".join(bad))
  unused = sorted({k.split(".")[0] if not k.startswith("encoder.") else k
                   for k in theirs if k not in flat_mine})
  fresh = sorted({k.rsplit(".", 1)[0] for k in flat_mine
                  if not k.startswith("encoder.") or k in fresh_norm})
  log(f"init_from: {len(wanted)} encoder parameters loaded; freshly initialised: {fresh}; "
      f"unused from the checkpoint: {unused}")

  def pick(tree, prefix=""):
    out = {}
    for k, v in tree.items():
      name = f"{prefix}{k}"
      if isinstance(v, dict):
        sub = pick(v, name + ".")
        if sub:
          out[k] = sub
      elif name.startswith("encoder.") and name in theirs:
        out[k] = theirs[name]
    return out
  return pick(mine)
