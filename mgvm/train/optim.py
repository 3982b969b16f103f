"""AdamW with the VideoMAE recipe (docs/algorithms.md §1.4, §1.6).

- Learning rates scale with the global batch: `lr = base_lr * global_batch_size / 256`.
- Per-step schedule as the reference `cosine_scheduler`: a linear warmup from 0 that reaches
  the peak at step `warmup_steps - 1` (`np.linspace(0, peak, warmup_steps)`), then
  `end + (peak - end) * (1 + cos(pi * i / (total - warmup))) / 2` for `i = step - warmup`.
- No weight decay on 1-D params, biases, mask/cls tokens and position tables.
- `lr_multipliers` {top-level module: factor} scales those params' whole update the same way
  (EVAD's 8x learning rate for its detection head: `{"localizer": 8.0}`).
- Layer-wise LR decay: scale `decay ** (num_layers + 1 - layer_index)` multiplies the whole
  AdamW update of a param (its weight-decay term included), like the reference's per-group lr.

All functions work on any pytree of arrays, including `nnx.State` from `nnx.split`
(whose leaves sit under `Variable.value`) and plain nested dicts.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

# Leaf names that are never decayed and that sit at layer 0 (reference `no_weight_decay()`).
NO_DECAY_NAMES = ("mask_token", "cls_token", "pos_embed")
# Leading path components that wrap the encoder (`VideoMAE.encoder`, `VideoClassifier.encoder`).
ENCODER_PREFIXES = ("encoder", "backbone")
# Path components of the tubelet/patch embedding (layer 0).
EMBED_NAMES = ("patch_embed",)

_REQUIRED_KEYS = ("base_lr", "min_lr", "warmup_steps", "weight_decay")
_DEFAULTS = {
  "b1": 0.9,
  "b2": 0.999,
  "eps": 1e-8,
  "layer_decay": 1.0,
  "clip_grad_norm": 0.0,
  "lr_multipliers": None,
}


def path_names(path) -> tuple[str, ...]:
  """A pytree key path as strings, without the `.value` attribute of NNX Variables."""
  names = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      names.append(str(key.idx))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      if key.name != "value":
        names.append(key.name)
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      names.append(str(key.key))
    else:
      names.append(str(key))
  return tuple(names)


def _is_position_table(name: str) -> bool:
  return "pos_embed" in name or name in ("pos", "position_embedding", "position_embeddings")


def _decayed(names: tuple[str, ...], ndim: int) -> bool:
  if ndim < 2:
    return False
  leaf = names[-1] if names else ""
  if leaf == "bias" or leaf.endswith("_bias"):
    return False
  return not any(n in NO_DECAY_NAMES or _is_position_table(n) for n in names)


def decay_mask(params) -> Any:
  """Pytree of bools, True where weight decay applies (>= 2-D weights that are not tokens,
  position tables or biases)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, x: _decayed(path_names(path), len(jnp.shape(x))), params
  )


def layer_index(path, num_layers: int) -> int:
  """Layer id of a param (reference `get_num_layer_for_vit`).

  Tubelet embedding, position tables and mask/cls tokens -> 0; encoder block k -> k + 1;
  everything else (fc_norm, head, final norm, decoder) -> num_layers + 1.
  `path` is a pytree key path or a tuple of names.
  """
  names = tuple(path) if all(isinstance(n, str) for n in path) else path_names(path)
  if names and names[0] in ENCODER_PREFIXES:
    names = names[1:]
  if not names:
    return num_layers + 1
  head = names[0]
  if head in NO_DECAY_NAMES or _is_position_table(head) or head in EMBED_NAMES:
    return 0
  if head == "blocks" and len(names) > 1:
    try:
      block = int(names[1])
    except ValueError:
      raise ValueError(f"Cannot read a block number from param path {'/'.join(names)}.") from None
    if not 0 <= block < num_layers:
      raise ValueError(f"Param {'/'.join(names)} is in block {block}, but num_layers={num_layers}.")
    return block + 1
  return num_layers + 1


def layer_decay_scales(params, num_layers: int, decay: float) -> Any:
  """Pytree of floats `decay ** (num_layers + 1 - layer_index)` (1.0 for head and decoder)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: float(decay) ** (num_layers + 1 - layer_index(path, num_layers)), params
  )


def scale_by_layer_decay(num_layers: int, decay: float) -> optax.GradientTransformation:
  """Multiplies each update by its layer-decay scale (computed from the update's path)."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    scales = layer_decay_scales(updates, num_layers, decay)
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_module(multipliers: dict[str, float]) -> optax.GradientTransformation:
  """Multiplies the update of every param under top-level module `name` by `multipliers[name]`."""
  multipliers = {str(k): float(v) for k, v in multipliers.items()}

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    def scale(path, u):
      names = path_names(path)
      factor = multipliers.get(names[0], 1.0) if names else 1.0
      return u if factor == 1.0 else u * jnp.asarray(factor, u.dtype)

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def lr_schedule(
  *, base_lr: float, min_lr: float, global_batch_size: int, warmup_steps: int, total_steps: int
) -> optax.Schedule:
  """Per-step learning rate: warmup from 0 to `base_lr * B / 256`, cosine to `min_lr * B / 256`.

  Matches the reference table exactly: step s < W gives `peak * s / (W - 1)` (0 when W == 1);
  step s >= W gives `end + (peak - end) * (1 + cos(pi * (s - W) / (T - W))) / 2`. Steps
  past `total_steps` stay at `end`.
  """
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size must be >= 1; got {global_batch_size}.")
  if not 0 <= warmup_steps < total_steps:
    raise ValueError(
      f"Need 0 <= warmup_steps < total_steps; got warmup_steps={warmup_steps}, "
      f"total_steps={total_steps}."
    )
  if base_lr < 0 or min_lr < 0:
    raise ValueError(f"Learning rates must be >= 0; got base_lr={base_lr}, min_lr={min_lr}.")
  peak = base_lr * global_batch_size / 256
  end = min_lr * global_batch_size / 256
  warmup, decay_steps = int(warmup_steps), int(total_steps) - int(warmup_steps)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    if warmup > 1:
      warm = peak * step / (warmup - 1)
    else:
      warm = jnp.zeros_like(step)
    i = jnp.clip(step - warmup, 0, decay_steps)
    cos = end + 0.5 * (peak - end) * (1 + jnp.cos(jnp.pi * i / decay_steps))
    return jnp.where(step < warmup, warm, cos)

  return schedule


def _fmt(x: float) -> str:
  """1.2e-3 style: short mantissa, no padded exponent."""
  if x == 0:
    return "0"
  mantissa, exponent = f"{x:.3e}".split("e")
  mantissa = mantissa.rstrip("0").rstrip(".")
  return f"{mantissa}e{int(exponent)}"


def describe_lr(optim_config, global_batch_size: int) -> str:
  """A log line: 'peak lr 1.2e-3 = base_lr 1.5e-4 x global batch 2048 / 256; ...'."""
  cfg = _read_config(optim_config)
  scale = global_batch_size / 256
  return (
    f"peak lr {_fmt(cfg['base_lr'] * scale)} = base_lr {_fmt(cfg['base_lr'])} x global batch "
    f"{global_batch_size} / 256; min lr {_fmt(cfg['min_lr'] * scale)} = min_lr "
    f"{_fmt(cfg['min_lr'])} x {global_batch_size} / 256; linear warmup from 0 over "
    f"{cfg['warmup_steps']} steps, then cosine"
  )


def _read_config(optim_config) -> dict[str, Any]:
  def get(key):
    try:
      return optim_config[key]
    except (KeyError, TypeError, AttributeError):
      pass
    if hasattr(optim_config, key):
      return getattr(optim_config, key)
    raise KeyError(key)

  cfg = {}
  for key in _REQUIRED_KEYS:
    try:
      cfg[key] = get(key)
    except KeyError:
      raise KeyError(
        f"optim config is missing the key {key!r} (needs {', '.join(_REQUIRED_KEYS)}; "
        f"optional {', '.join(_DEFAULTS)})."
      ) from None
  for key, default in _DEFAULTS.items():
    try:
      cfg[key] = get(key)
    except KeyError:
      cfg[key] = default
  for key in ("base_lr", "min_lr", "weight_decay", "eps", "clip_grad_norm"):
    if cfg[key] is None or float(cfg[key]) < 0:
      raise ValueError(f"optim config {key}={cfg[key]!r} must be a number >= 0.")
  for key in ("b1", "b2"):
    if not 0 <= float(cfg[key]) < 1:
      raise ValueError(f"optim config {key}={cfg[key]!r} must be in [0, 1).")
  if not 0 < float(cfg["layer_decay"]) <= 1:
    raise ValueError(
      f"optim config layer_decay={cfg['layer_decay']!r} must be in (0, 1] (1.0 turns it off)."
    )
  multipliers = cfg["lr_multipliers"]
  if multipliers:
    multipliers = dict(multipliers.items())
    bad = {k: v for k, v in multipliers.items() if not float(v) > 0}
    if bad:
      raise ValueError(f"optim config lr_multipliers {bad} must be > 0.")
    cfg["lr_multipliers"] = multipliers
  if int(cfg["warmup_steps"]) != cfg["warmup_steps"] or cfg["warmup_steps"] < 0:
    raise ValueError(f"optim config warmup_steps={cfg['warmup_steps']!r} must be an int >= 0.")
  return cfg


def make_optimizer(
  optim_config, params, *, global_batch_size: int, total_steps: int, num_layers: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """[clip_by_global_norm] -> AdamW(schedule, decay_mask) -> [layer-decay scale].

  `params` (arrays or `ShapeDtypeStruct`s) is checked against the rules: with layer decay on,
  every `blocks/k` must have k < num_layers. Returns `(tx, schedule)`; `schedule(step)` is
  the unscaled (layer-1.0) learning rate, for logging.
  """
  cfg = _read_config(optim_config)
  schedule = lr_schedule(
    base_lr=float(cfg["base_lr"]),
    min_lr=float(cfg["min_lr"]),
    global_batch_size=global_batch_size,
    warmup_steps=int(cfg["warmup_steps"]),
    total_steps=total_steps,
  )
  parts = []
  if float(cfg["clip_grad_norm"]) > 0:
    parts.append(optax.clip_by_global_norm(float(cfg["clip_grad_norm"])))
  parts.append(
    optax.adamw(
      schedule,
      b1=float(cfg["b1"]),
      b2=float(cfg["b2"]),
      eps=float(cfg["eps"]),
      weight_decay=float(cfg["weight_decay"]),
      mask=decay_mask,
    )
  )
  if float(cfg["layer_decay"]) < 1.0:
    layer_decay_scales(params, num_layers, float(cfg["layer_decay"]))  # Validates the paths.
    parts.append(scale_by_layer_decay(num_layers, float(cfg["layer_decay"])))
  if cfg["lr_multipliers"]:
    top = {path_names(p)[0] for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    unknown = sorted(set(cfg["lr_multipliers"]) - top)
    if unknown:
      raise ValueError(
        f"optim config lr_multipliers names {unknown}, which the model does not "
        f"have; its top-level modules: {sorted(top)}"
      )
    parts.append(scale_by_module(cfg["lr_multipliers"]))
  return optax.chain(*parts), schedule
