"""`load_torch_checkpoint`: a `VideoMAE` or `VideoClassifier` from a PyTorch checkpoint.

Reads the official (VideoMAE / VideoMAE-v2 / MGMAE / EVEREST) and Hugging Face layouts,
checks the checkpoint against the requested kind, detects the model's sizes from the weights
and builds the model, assigning every array through the parameter checker.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import token_grid
from mgvm.weights.layouts import (
  Entry,
  canonical_from_hf,
  canonical_from_official,
  detect_layout,
  drop_sinusoid_pos_embed,
  to_model_name,
)
from mgvm.weights.params import assign
from mgvm.weights.read import read_state_dict
from mgvm.weights.resize import describe_grid_change, resize_table

__all__ = ["load_torch_checkpoint"]

# Official head counts by width (docs/algorithms.md §1.1), used when neither config.json nor the
# caller names them.
ENCODER_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16}
DECODER_HEADS = {192: 3, 384: 6, 512: 8, 640: 8}


# ----------------------------------------------------------------------------- the checkpoint


def _read_entries(source: Any) -> tuple[dict[str, Entry], dict, str]:
  """The checkpoint under the official pre-training names, its config.json (or {}), its layout."""
  state, config = read_state_dict(source)
  config = config or {}
  if any(k.startswith("embeddings.patch_embeddings.") for k in state):  # bare VideoMAEModel
    state = {"videomae." + k: v for k, v in state.items()}
  layout = detect_layout(state)
  entries = canonical_from_hf(state) if layout == "hf" else canonical_from_official(state)
  drop_sinusoid_pos_embed(entries)
  return entries, config, layout


def _check_pretrain(entries: Mapping[str, Entry], layout: str) -> None:
  """A pre-training model needs the decoder (the encoder's final norm is optional:
  `encoder_norm`, Hugging Face's use_mean_pooling=True has none)."""
  has_decoder = any(
    n.startswith(("decoder.", "encoder_to_decoder.")) or n == "mask_token" for n in entries
  )
  if not has_decoder:
    raise ValueError(
      f"kind='pretrain' needs a pre-training checkpoint, but this {layout} "
      "checkpoint has no decoder (a fine-tuned or encoder-only model?); "
      "use kind='classifier'."
    )


def _check_classifier(
  entries: dict[str, Entry], config: Mapping[str, Any], num_classes: int | None
) -> tuple[int, tuple[str, ...]]:
  """(num_classes, parameter prefixes initialised fresh); drops the pre-training-only entries."""
  allow_missing: tuple[str, ...] = ()
  if "head.weight" in entries:
    if "fc_norm.weight" not in entries or config.get("use_mean_pooling") is False:
      raise ValueError(
        "this classifier checkpoint does not use mean pooling (no fc_norm; Hugging Face "
        "use_mean_pooling=False or the official `norm` + first-token head); mgvm's "
        "VideoClassifier supports only mean pooling + fc_norm."
      )
    head_classes = int(entries["head.weight"].value.shape[0])
    if num_classes is not None and num_classes != head_classes:
      raise ValueError(
        f"num_classes={num_classes} but the checkpoint's head has {head_classes} classes."
      )
    num_classes = head_classes
  else:
    if num_classes is None:
      raise ValueError(
        "kind='classifier' from a pre-training (or encoder-only) checkpoint "
        "initialises a new head: pass num_classes=."
      )
    allow_missing = ("fc_norm.", "head.")
  for name in list(entries):  # pre-training-only parts
    if (
      name.startswith(("decoder.", "encoder_to_decoder.", "encoder.norm.")) or name == "mask_token"
    ):
      del entries[name]
  return num_classes, allow_missing


# ----------------------------------------------------------------------------- size detection


def _block_count(entries: Mapping[str, Entry], prefix: str) -> int:
  pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
  ids = {int(m.group(1)) for n in entries if (m := pat.match(n))}
  if ids and ids != set(range(max(ids) + 1)):
    raise ValueError(f"{prefix}: block indices {sorted(ids)} are not contiguous from 0.")
  return len(ids)


def _mlp_ratio(dim: int, hidden: int) -> float:
  ratio = hidden / dim
  return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _pick(name: str, from_config, from_arg, fallback, *, conflict_is_error: bool):
  if from_config is not None and from_arg is not None and from_config != from_arg:
    if conflict_is_error:
      raise ValueError(f"{name}={from_arg!r} contradicts config.json ({from_config!r}).")
    return from_arg
  if from_config is not None:
    return from_config
  if from_arg is not None:
    return from_arg
  return fallback


class UnknownHeadsError(ValueError):
  """The file does not say its attention heads, and its width is not in the table."""


def _heads(what: str, dim: int, from_config, from_arg, table: Mapping[int, int], arg_name: str):
  heads = _pick(arg_name, from_config, from_arg, table.get(dim), conflict_is_error=True)
  if heads is None:
    if dim % 64:
      raise UnknownHeadsError(
        f"cannot infer the number of {what} attention heads for width {dim} "
        f"(not an official size and not a multiple of 64); pass {arg_name}=."
      )
    heads = dim // 64
  if dim % heads:
    raise ValueError(f"{what} width {dim} is not divisible by {arg_name}={heads}.")
  return int(heads)


def _image_size(value):
  if value is None or isinstance(value, int):
    return value
  value = tuple(int(v) for v in value)
  return value[0] if len(set(value)) == 1 else value


def _encoder_sizes(
  entries: Mapping[str, Entry],
  config: Mapping[str, Any],
  num_heads: int | None,
  num_frames: int | None,
  image_size: Any,
  heads_table: Mapping[int, int],
) -> dict[str, Any]:
  """Encoder sizes from the weights; heads and clip size from config.json / the arguments."""
  patch = entries.get("encoder.patch_embed.proj.weight")
  if patch is None or patch.value.ndim != 5:
    raise ValueError(
      "the checkpoint has no Conv3d patch embedding "
      "(patch_embed.proj.weight / patch_embeddings.projection.weight)."
    )
  dim, in_channels, *tubelet = (int(s) for s in patch.value.shape)
  depth = _block_count(entries, "encoder.blocks")
  if depth == 0:
    raise ValueError("the checkpoint has no encoder blocks.")
  fc1 = entries.get("encoder.blocks.0.mlp.fc1.weight")
  mlp_ratio = _mlp_ratio(dim, int(fc1.value.shape[0])) if fc1 is not None else 4.0
  sizes: dict[str, Any] = dict(
    dim=dim,
    depth=depth,
    tubelet=tuple(tubelet),
    in_channels=in_channels,
    mlp_ratio=mlp_ratio,
    qkv_bias="encoder.blocks.0.attn.q_bias" in entries,
    layer_scale_init=1.0 if "encoder.blocks.0.gamma_1" in entries else 0.0,
    pos_embed="learned" if "encoder.pos_embed" in entries else "sinusoid",
  )
  sizes["num_heads"] = _heads(
    "encoder", dim, config.get("num_attention_heads"), num_heads, heads_table, "num_heads"
  )
  sizes["num_frames"] = int(
    _pick("num_frames", config.get("num_frames"), num_frames, 16, conflict_is_error=False)
  )
  sizes["image_size"] = _image_size(
    _pick(
      "image_size",
      _image_size(config.get("image_size")),
      _image_size(image_size),
      224,
      conflict_is_error=False,
    )
  )
  return sizes


def _decoder_sizes(
  entries: Mapping[str, Entry],
  config: Mapping[str, Any],
  mlp_ratio: float,
  decoder_heads: int | None,
  heads_table: Mapping[int, int],
) -> dict[str, Any]:
  """Decoder width, depth and heads; the decoder must share the encoder's MLP ratio."""
  e2d = entries.get("encoder_to_decoder.weight")
  mask_token = entries.get("mask_token")
  if e2d is not None:
    decoder_dim = int(e2d.value.shape[0])
  elif mask_token is not None:
    decoder_dim = int(mask_token.value.shape[-1])
  else:
    raise ValueError(
      "the pre-training checkpoint has neither encoder_to_decoder.weight nor "
      "mask_token, so the decoder width is unknown."
    )
  decoder_depth = _block_count(entries, "decoder.blocks")
  dfc1 = entries.get("decoder.blocks.0.mlp.fc1.weight")
  if dfc1 is not None and int(decoder_dim * mlp_ratio) != int(dfc1.value.shape[0]):
    raise ValueError(
      f"the decoder's MLP width {dfc1.value.shape[0]} is not "
      f"{mlp_ratio:g} x {decoder_dim} (the encoder's ratio); mgvm's VideoMAE "
      "uses one MLP ratio for encoder and decoder."
    )
  return dict(
    decoder_dim=decoder_dim,
    decoder_depth=decoder_depth,
    decoder_heads=_heads(
      "decoder",
      decoder_dim,
      config.get("decoder_num_attention_heads"),
      decoder_heads,
      heads_table,
      "decoder_heads",
    ),
  )


def _checkpoint_grid(config: Mapping[str, Any], tubelet) -> tuple[int, int, int] | None:
  """The (T', h, w) grid of config.json's clip, when it names one."""
  if config.get("num_frames") is None or config.get("image_size") is None:
    return None
  size = config["image_size"]
  height, width = (size, size) if isinstance(size, int) else tuple(size)
  return int(config["num_frames"]) // tubelet[0], height // tubelet[1], width // tubelet[2]


def _fit_positions(entries, sizes, config, pos_embed_grid, log) -> None:
  """A learned `encoder.pos_embed` resized to the model's grid; the change is logged."""
  target = token_grid(sizes["num_frames"], sizes["image_size"], sizes["tubelet"])
  entry = entries.get("encoder.pos_embed")
  stored = pos_embed_grid or _checkpoint_grid(config, sizes["tubelet"])
  if entry is None:
    if log is not None:
      log(
        describe_grid_change(stored, target, learned=False)
        if stored is not None
        else f"positions: fixed sinusoid table built for the token grid {target} (the file "
        "does not record the clip it was trained on)"
      )
    return
  rows = int(entry.value.shape[0])
  if stored is None:
    if rows != math.prod(target):
      raise ValueError(
        f"{entry.source} is a learned position table of {rows} tokens, but the model's grid "
        f"{target} has {math.prod(target)}; pass pos_embed_grid=(T', h, w), the grid it was "
        "trained for, to interpolate it"
      )
    stored = target
  if math.prod(stored) != rows:
    raise ValueError(
      f"{entry.source} has {rows} position rows, but its grid {tuple(stored)} has "
      f"{math.prod(stored)} tokens"
    )
  entries["encoder.pos_embed"] = dataclasses.replace(
    entry, value=resize_table(entry.value, stored, target)
  )
  if log is not None:
    log(describe_grid_change(stored, target, learned=True))


# ----------------------------------------------------------------------------- building


def _model_builder(
  kind: str, num_classes: int | None, dtype, kwargs: dict[str, Any]
) -> Callable[[nnx.Rngs], VideoMAE | VideoClassifier]:
  if kind == "pretrain":
    return lambda r: VideoMAE(None, dtype=dtype, rngs=r, **kwargs)
  return lambda r: VideoClassifier(None, num_classes=num_classes, dtype=dtype, rngs=r, **kwargs)


def _build_and_assign(
  build: Callable[[nnx.Rngs], nnx.Module],
  entries: Mapping[str, Entry],
  rngs: nnx.Rngs | int | None,
  allow_missing: tuple[str, ...],
) -> nnx.Module:
  """Build the model (abstractly when the checkpoint provides every parameter), then assign."""
  if allow_missing or rngs is not None:
    # Some parameters start fresh: initialise for real.
    if rngs is None:
      rngs = nnx.Rngs(0)
    elif isinstance(rngs, int):
      rngs = nnx.Rngs(rngs)
    model = build(rngs)
  else:
    # Every parameter comes from the checkpoint: build shapes only (no initialisation, which
    # is slow and memory-hungry for large models), then fill in the arrays.
    model = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
  assign(model, dict(to_model_name(n, e) for n, e in entries.items()), allow_missing=allow_missing)
  leftover = [
    jax.tree_util.keystr(p)
    for p, x in jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
    if isinstance(x, jax.ShapeDtypeStruct)
  ]
  if leftover:  # a non-parameter variable the checkpoint cannot provide
    model = build(nnx.Rngs(0))
    assign(model, dict(to_model_name(n, e) for n, e in entries.items()))
  return model


# ----------------------------------------------------------------------------- public API


def load_torch_checkpoint(
  source: Any,
  *,
  kind: str = "pretrain",
  num_classes: int | None = None,
  num_frames: int | None = None,
  image_size: Any = None,
  num_heads: int | None = None,
  decoder_heads: int | None = None,
  heads_by_width: Mapping[int, int] | None = None,
  decoder_heads_by_width: Mapping[int, int] | None = None,
  pos_embed_grid: tuple[int, int, int] | None = None,
  dtype=jnp.float32,
  rngs: nnx.Rngs | int | None = None,
  log: Callable[[str], None] | None = None,
  **model_kwargs,
) -> VideoMAE | VideoClassifier:
  """Build a `VideoMAE` (`kind="pretrain"`) or `VideoClassifier` (`kind="classifier"`) from a checkpoint.

  Args:
    source: a `.pth`/`.pt`/`.bin`/`.ckpt` file, a `.safetensors` file, a Hugging Face
      directory (`config.json` + `model.safetensors` or `pytorch_model.bin`), or a state
      dict of torch tensors / numpy arrays; nesting under `model`, `module` or `state_dict`
      is unwrapped. Official and Hugging Face layouts are detected from the keys.
    kind: "auto" is "classifier" for a checkpoint with a head (or given `num_classes`), else
      "pretrain". "pretrain" needs a checkpoint with a decoder. "classifier" from a fine-tuned
      (mean-pooling) checkpoint takes `num_classes` from its head; from a pre-training or
      encoder-only checkpoint it loads the encoder (the pre-training final norm is dropped,
      as the reference's mean-pooling model ignores it) and initialises `fc_norm`/`head`
      fresh, which needs `num_classes`.
    num_frames, image_size: the clip the model is built for; config.json's values unless
      given, else 16 / 224. Fixed sinusoid positions are rebuilt for any size; a learned
      `pos_embed` is interpolated trilinearly from the checkpoint's grid (`mgvm.weights.resize`).
    pos_embed_grid: the (T', h, w) grid of a learned table whose token count differs from the
      model's (an official `.pth` does not record its clip); config.json's clip when it has one.
    num_heads, decoder_heads: heads, when config.json does not give them; else the
      official table by width (384→6, 768→12, 1024/1280→16; decoder 192→3, 384→6,
      512/640→8); else width // 64.
    heads_by_width, decoder_heads_by_width: {width: heads} entries that extend (and override)
      that table, e.g. the heads of the model a config describes, for a file that cannot say.
    dtype: compute dtype (params stay float32).
    rngs: initialises parameters the checkpoint does not provide (default `nnx.Rngs(0)`).
      When the checkpoint provides every parameter and `rngs` is None, the model is
      built with `nnx.eval_shape` and nothing is initialised.
    log: where the position change is reported (`mgvm.weights.resize`); None: silent.
    **model_kwargs: passed to the model (e.g. `drop_path_rate`, `fc_drop_rate`).

  Dims, depth, tubelet, channels, MLP ratio, q/v biases and layer scale come from the
  weights, and so does `encoder_norm` (a pre-training encoder without the final LayerNorm: Hugging
  Face's default `use_mean_pooling=True`). The Hugging Face `layer_norm_eps` is not read: mgvm
  uses the reference's 1e-6.

  Raises:
    UnsafeCheckpointError: a pickled file holds objects other than tensors.
    CheckpointMismatchError: the weights do not fit the model (lists every problem).
    ValueError: an unusable checkpoint for `kind` (no decoder, no mean pooling, ...).
  """
  if kind not in ("pretrain", "classifier", "auto"):
    raise ValueError(f"kind must be 'pretrain', 'classifier' or 'auto'; got {kind!r}.")
  entries, config, layout = _read_entries(source)
  if kind == "auto":
    kind = "classifier" if "head.weight" in entries or num_classes is not None else "pretrain"
  allow_missing: tuple[str, ...] = ()
  if kind == "pretrain":
    _check_pretrain(entries, layout)
  else:
    num_classes, allow_missing = _check_classifier(entries, config, num_classes)
  sizes = _encoder_sizes(
    entries, config, num_heads, num_frames, image_size, {**ENCODER_HEADS, **(heads_by_width or {})}
  )
  _fit_positions(entries, sizes, config, pos_embed_grid, log)
  if kind == "pretrain":
    table = {**DECODER_HEADS, **(decoder_heads_by_width or {})}
    sizes.update(_decoder_sizes(entries, config, sizes["mlp_ratio"], decoder_heads, table))
    sizes["encoder_norm"] = "encoder.norm.weight" in entries
  elif decoder_heads is not None:
    raise ValueError("decoder_heads= applies to kind='pretrain' only.")
  build = _model_builder(kind, num_classes, dtype, {**sizes, **model_kwargs})
  return _build_and_assign(build, entries, rngs, allow_missing)
