"""AdamW with the VideoMAE recipe (docs/algorithms.md §1.4, §1.6).

- Learning rates scale with the global batch: `lr = base_lr * batch / 256`, where `batch` counts
  videos (`optim.lr_scale_by="videos"`, the references' rule: repeated augmentation's
  `data.num_sample` clips of a video count once) or clips (`"clips"`); `lr_batch_size`.
- `schedule="cosine"`: per-step schedule as the reference `cosine_scheduler`: a linear warmup
  from `warmup_from` that reaches the peak at step `warmup_steps - 1`
  (`np.linspace(start, peak, warmup_steps)`), then
  `end + (peak - end) * (1 + cos(pi * i / (total - warmup))) / 2` for `i = step - warmup`.
- `schedule="step"` (SlowFast's `steps_with_relative_lrs`, used by EVAD): `peak *
  decay_factor ** k` after the k-th of `decay_steps`, reached by a linear warmup from
  `warmup_from` that arrives at step `warmup_steps` (SlowFast's `get_lr_at_epoch`).
- No weight decay on 1-D params, biases, mask/cls tokens and position tables.
- `lr_multipliers`: (regex, factor) pairs, matched against each param's '/'-joined path at
  component boundaries (the first match wins), scale those params' whole update (EVAD's 8x for
  its detection head: `(("localizer/heads", 8.0), ("decoder_embed", 8.0), ...)`). A dict
  {top-level module: factor} still works.
- Layer-wise LR decay: scale `decay ** (num_layers + 1 - layer_index)` multiplies the whole
  AdamW update of a param (its weight-decay term included), like the reference's per-group lr.

All functions work on any pytree of arrays, including `nnx.State` from `nnx.split`
(whose leaves sit under `Variable.value`) and plain nested dicts.
"""

from __future__ import annotations

import re
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
  "warmup_from": 0.0,
  "schedule": "cosine",
  "decay_steps": (),
  "decay_factor": 0.1,
  "lr_scale_by": "videos",
}
SCHEDULES = ("cosine", "step")
LR_SCALE_BY = ("videos", "clips")


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


def multiplier_rules(multipliers) -> tuple[tuple[str, float], ...]:
  """(regex, factor) pairs from a sequence of pairs or a {pattern: factor} mapping."""
  if not multipliers:
    return ()
  items = multipliers.items() if hasattr(multipliers, "items") else multipliers
  rules = []
  for item in items:
    try:
      pattern, factor = item
    except (TypeError, ValueError):
      raise ValueError(
        f"optim config lr_multipliers entry {item!r} is not a (regex, factor) pair"
      ) from None
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f"optim config lr_multipliers pattern {pattern!r}: {e}") from None
    if not float(factor) > 0:
      raise ValueError(f"optim config lr_multipliers {pattern!r}: factor {factor!r} must be > 0.")
    rules.append((str(pattern), float(factor)))
  return tuple(rules)


def _matches(pattern: str, path: str) -> bool:
  """`pattern` matches `path` whole or a leading part of it that ends at a '/'."""
  return re.fullmatch(f"(?:{pattern})(?:/.*)?", path) is not None


def multiplier_of(path: str, rules) -> float:
  """The factor of the first rule whose pattern matches `path` (1.0 if none)."""
  for pattern, factor in rules:
    if _matches(pattern, path):
      return factor
  return 1.0


def scale_by_module(multipliers) -> optax.GradientTransformation:
  """Multiplies the update of every param by the factor of the first `multipliers` pattern
  matching its '/'-joined path (`multiplier_rules`; a {top-level module: factor} dict too)."""
  rules = multiplier_rules(multipliers)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    def scale(path, u):
      factor = multiplier_of("/".join(path_names(path)), rules)
      return u if factor == 1.0 else u * jnp.asarray(factor, u.dtype)

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def check_multipliers(rules, params) -> None:
  """Every pattern must match some param of `params` (a typo would silently do nothing)."""
  paths = ["/".join(path_names(p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  unused = [pattern for pattern, _ in rules if not any(_matches(pattern, p) for p in paths)]
  if unused:
    top = sorted({p.split("/")[0] for p in paths})
    raise ValueError(
      f"optim config lr_multipliers patterns {unused} match no param of the model; its "
      f"top-level modules: {top} (patterns match '/'-joined paths such as "
      f"{paths[0] if paths else '-'!r}, whole or up to a '/')"
    )


def lr_batch_size(config) -> int:
  """The batch the learning rate scales with: videos per step (`batch_size / data.num_sample`,
  `optim.lr_scale_by="videos"`, the references' rule) or clips (`"clips"`)."""
  by = config.optim.get("lr_scale_by", "videos")
  if by not in LR_SCALE_BY:
    raise ValueError(f"optim config lr_scale_by={by!r}; expected one of {LR_SCALE_BY}")
  if by == "clips":
    return int(config.batch_size)
  num_sample = int(config.data.get("num_sample", 1) or 1)
  if config.batch_size % num_sample:
    raise ValueError(
      f"batch_size={config.batch_size} (clips) is not a multiple of data.num_sample={num_sample}"
    )
  return int(config.batch_size) // num_sample


def lr_schedule(
  *,
  base_lr: float,
  min_lr: float,
  global_batch_size: int,
  warmup_steps: int,
  total_steps: int,
  warmup_from: float = 0.0,
  schedule: str = "cosine",
  decay_steps=(),
  decay_factor: float = 0.1,
) -> optax.Schedule:
  """Per-step learning rate; `base_lr`, `min_lr` and `warmup_from` are per 256 of
  `global_batch_size` (the batch the LR scales with, `lr_batch_size`).

  `"cosine"` matches the reference table exactly: step s < W gives `start + (peak - start) *
  s / (W - 1)` (`start` when W == 1); step s >= W gives `end + (peak - end) * (1 + cos(pi *
  (s - W) / (T - W))) / 2`; steps past `total_steps` stay at `end`. `"step"`: `peak *
  decay_factor ** k` after k of the `decay_steps` boundaries (`min_lr` unused); during warmup
  `start + (that - start) * s / W`, as SlowFast.
  """
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size must be >= 1; got {global_batch_size}.")
  if not 0 <= warmup_steps < total_steps:
    raise ValueError(
      f"Need 0 <= warmup_steps < total_steps; got warmup_steps={warmup_steps}, "
      f"total_steps={total_steps}."
    )
  if base_lr < 0 or min_lr < 0 or warmup_from < 0:
    raise ValueError(
      f"Learning rates must be >= 0; got base_lr={base_lr}, min_lr={min_lr}, "
      f"warmup_from={warmup_from}."
    )
  if schedule not in SCHEDULES:
    raise ValueError(f"optim config schedule={schedule!r}; expected one of {SCHEDULES}")
  scale = global_batch_size / 256
  peak, end, start = base_lr * scale, min_lr * scale, warmup_from * scale
  warmup, decay_len = int(warmup_steps), int(total_steps) - int(warmup_steps)
  if schedule == "step":
    bounds = tuple(int(b) for b in decay_steps)
    if list(bounds) != sorted(bounds) or any(b <= 0 for b in bounds):
      raise ValueError(f"optim config decay_steps={bounds} must be ascending and > 0.")
    if not 0 < decay_factor <= 1:
      raise ValueError(f"optim config decay_factor={decay_factor} must be in (0, 1].")
    after_warmup = peak * decay_factor ** sum(b <= warmup for b in bounds)

    def step_schedule(step):
      step = jnp.asarray(step, jnp.float32)
      passed = sum((step >= b).astype(jnp.float32) for b in bounds) if bounds else 0.0
      level = peak * jnp.power(jnp.float32(decay_factor), passed)
      warm = start + (after_warmup - start) * step / max(warmup, 1)
      return jnp.where(step < warmup, warm, level)

    return step_schedule

  def schedule_fn(step):
    step = jnp.asarray(step, jnp.float32)
    if warmup > 1:
      warm = start + (peak - start) * step / (warmup - 1)
    else:
      warm = jnp.full_like(step, start)
    i = jnp.clip(step - warmup, 0, decay_len)
    cos = end + 0.5 * (peak - end) * (1 + jnp.cos(jnp.pi * i / decay_len))
    return jnp.where(step < warmup, warm, cos)

  return schedule_fn


def _fmt(x: float) -> str:
  """1.2e-3 style: short mantissa, no padded exponent."""
  if x == 0:
    return "0"
  mantissa, exponent = f"{x:.3e}".split("e")
  mantissa = mantissa.rstrip("0").rstrip(".")
  return f"{mantissa}e{int(exponent)}"


def describe_lr(optim_config, global_batch_size: int) -> str:
  """A log line: 'peak lr 1.2e-3 = base_lr 1.5e-4 x batch 2048 / 256; ...'."""
  cfg = _read_config(optim_config)
  scale = global_batch_size / 256
  start = float(cfg["warmup_from"])
  head = (
    f"peak lr {_fmt(cfg['base_lr'] * scale)} = base_lr {_fmt(cfg['base_lr'])} x "
    f"{global_batch_size} {cfg['lr_scale_by']} per step / 256; linear warmup from "
    f"{_fmt(start * scale)} over {cfg['warmup_steps']} steps, then "
  )
  if cfg["schedule"] == "step":
    return head + (
      f"x{float(cfg['decay_factor']):g} at steps {', '.join(map(str, cfg['decay_steps']))}"
    )
  return head + (
    f"cosine to min lr {_fmt(cfg['min_lr'] * scale)} = min_lr {_fmt(cfg['min_lr'])} x "
    f"{global_batch_size} / 256"
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
  cfg["lr_multipliers"] = multiplier_rules(cfg["lr_multipliers"])
  for key, choices in (("schedule", SCHEDULES), ("lr_scale_by", LR_SCALE_BY)):
    if cfg[key] not in choices:
      raise ValueError(f"optim config {key}={cfg[key]!r}; expected one of {choices}")
  if int(cfg["warmup_steps"]) != cfg["warmup_steps"] or cfg["warmup_steps"] < 0:
    raise ValueError(f"optim config warmup_steps={cfg['warmup_steps']!r} must be an int >= 0.")
  return cfg


def make_optimizer(
  optim_config, params, *, global_batch_size: int, total_steps: int, num_layers: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """[clip_by_global_norm] -> AdamW(schedule, decay_mask) -> [layer-decay scale].

  `params` (arrays or `ShapeDtypeStruct`s) is checked against the rules: with layer decay on,
  every `blocks/k` must have k < num_layers; every `lr_multipliers` pattern must match a param.
  `global_batch_size` is the batch the LR scales with (`lr_batch_size`). Returns `(tx, schedule)`; `schedule(step)` is
  the unscaled (layer-1.0) learning rate, for logging.
  """
  cfg = _read_config(optim_config)
  schedule = lr_schedule(
    base_lr=float(cfg["base_lr"]),
    min_lr=float(cfg["min_lr"]),
    global_batch_size=global_batch_size,
    warmup_steps=int(cfg["warmup_steps"]),
    total_steps=total_steps,
    warmup_from=float(cfg["warmup_from"]),
    schedule=cfg["schedule"],
    decay_steps=tuple(cfg["decay_steps"] or ()),
    decay_factor=float(cfg["decay_factor"]),
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
    check_multipliers(cfg["lr_multipliers"], params)
    parts.append(scale_by_module(cfg["lr_multipliers"]))
  return optax.chain(*parts), schedule
