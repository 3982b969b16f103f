"""The per-pixel half of the input pipeline, on the accelerator: uint8 clips → model input.

The host decodes (only the crop window), resizes to the model size and emits uint8
`[B, T, S, S, 3]`, plus the random choices it drew per clip from the clip's seed: `flip` (bool
[B]) and `erase_box` (int32 [B, 4]: top, left, height, width; 0 × 0 = nothing erased).
`model_video` then flips, normalises and erases inside the jitted step, where the pixels are
cheap (docs/data.md, "Where each step runs"). A float video (already normalised, e.g. from the
detection pipeline or a test) passes through unchanged. Detection clips resized with their
aspect kept (`data.resize="short_side"`) also carry `image_hw` (int32 [B, 2]: the content at
the top left, the rest padding): the flip mirrors the content only and the padding is 0 after
normalisation (the reference pads normalised clips with 0). Clips made with
`make_dataset(..., motion=True)` carry the codec motion on the token grid; `model_motion` flips
it with the same `flip` flags, so it stays aligned to the video `model_video` gives.

The normalisation statistics are a choice (`config.data.normalization`, `NORMALIZATIONS`):
"imagenet" (VideoMAE) or "kinetics" (0.45 / 0.225 for every channel, SlowFast's and EVAD's).

No TensorFlow here: model, masker and step code import this module.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics of RGB in [0, 1]: the one copy (mgvm.data.video_ops uses these).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# `config.data.normalization` -> (mean, std) of RGB in [0, 1].
NORMALIZATIONS = {
  "imagenet": (MEAN, STD),
  "kinetics": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),  # SlowFast / EVAD DATA.MEAN, STD
}


def normalization_stats(normalization: str = "imagenet") -> tuple[tuple, tuple]:
  """(mean, std) per RGB channel of a `config.data.normalization` name."""
  if normalization not in NORMALIZATIONS:
    raise ValueError(
      f"config.data.normalization={normalization!r} is not known; accepted values: "
      f"{', '.join(repr(k) for k in NORMALIZATIONS)}"
    )
  return NORMALIZATIONS[normalization]


def _normalize_table(normalization: str = "imagenet") -> np.ndarray:
  """float32 [256, 3]: `(v / 255 - mean[c]) / std[c]` for every uint8 value v and channel c, by
  the operations of `mgvm.data.video_ops.normalize` in the same order."""
  mean, std = normalization_stats(normalization)
  values = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
  return (values - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


_TABLES = {name: _normalize_table(name) for name in NORMALIZATIONS}  # one table per choice


def normalize(video, normalization: str = "imagenet") -> jax.Array:
  """float32 `(video / 255 - mean) / std` per channel (RGB last) with the statistics of
  `normalization`, equal to the bit to `mgvm.data.video_ops.normalize`: uint8 pixels are looked
  up in a 256 × 3 table (compiled arithmetic may fuse and round differently); other dtypes are
  computed."""
  mean, std = normalization_stats(normalization)
  video = jnp.asarray(video)
  if video.dtype == jnp.uint8:
    return jnp.asarray(_TABLES[normalization])[video.astype(jnp.int32), jnp.arange(3)]
  x = video.astype(jnp.float32) / jnp.float32(255.0)
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def flip(video, flags, widths=None) -> jax.Array:
  """Mirrors (width axis) the clips of `video` [B, T, H, W, C] whose `flags` [B] are set.

  `widths` [B] (int): each clip's content width; only columns [0, width) mirror (column x ->
  width − 1 − x), the padding to the right stays. None: the whole width.
  """
  video = jnp.asarray(video)
  flags = jnp.asarray(flags, bool).reshape((-1,) + (1,) * (video.ndim - 1))
  if widths is None:
    return jnp.where(flags, video[..., ::-1, :], video)
  widths = jnp.asarray(widths, jnp.int32)[:, None]  # [B, 1]
  xs = jnp.arange(video.shape[-2], dtype=jnp.int32)[None]  # [1, W]
  source = jnp.where(xs < widths, widths - 1 - xs, xs)  # [B, W]
  mirrored = jnp.take_along_axis(video, source[:, None, None, :, None], axis=-2)
  return jnp.where(flags, mirrored, video)


def flip_motion(motion, flags) -> jax.Array:
  """Mirrors (width axis) the motion fields `motion` [B, T, h, w, 2] of the clips whose `flags`
  [B] are set, as `flip` mirrors their frames: cell column c -> w − 1 − c and dx -> −dx (dy
  kept). `model_motion` flips a batch's `motion` and `motion_valid` together."""
  motion = jnp.asarray(motion)
  flags = jnp.asarray(flags, bool).reshape((-1,) + (1,) * (motion.ndim - 1))
  mirrored = motion[..., ::-1, :] * jnp.asarray([-1.0, 1.0], motion.dtype)
  return jnp.where(flags, mirrored, motion)


def model_motion(batch: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """(`motion` [B, T, h, w, 2], `motion_valid` [B, T, h, w]) of a pipeline batch made with
  `make_dataset(..., motion=True)`, aligned to the video `model_video` gives: mirrored (grid and
  dx) where `batch["flip"]` is set, as is otherwise (docs/data.md, "Motion in clips")."""
  motion = jnp.asarray(batch["motion"], jnp.float32)
  valid = jnp.asarray(batch["motion_valid"], jnp.float32)
  if "flip" not in batch:
    return motion, valid
  flags = jnp.asarray(batch["flip"], bool)
  return flip_motion(motion, flags), flip(valid[..., None], flags)[..., 0]


def zero_padding(video, image_hw) -> jax.Array:
  """`video` [B, T, H, W, C] with every pixel outside its clip's content (`image_hw` [B, 2]:
  rows [0, h), columns [0, w) at the top left) set to 0."""
  video = jnp.asarray(video)
  hw = jnp.asarray(image_hw, jnp.int32)
  ys = jnp.arange(video.shape[-3], dtype=jnp.int32)[None, :, None]
  xs = jnp.arange(video.shape[-2], dtype=jnp.int32)[None, None, :]
  inside = (ys < hw[:, 0, None, None]) & (xs < hw[:, 1, None, None])  # [B, H, W]
  return jnp.where(inside[:, None, :, :, None], video, jnp.zeros((), video.dtype))


def erase(video, boxes, noise) -> jax.Array:
  """`video` [B, T, H, W, C] with each clip's box (`boxes` [B, 4]: top, left, height, width; the
  same box in every frame) replaced by `noise` (same shape as `video`)."""
  video = jnp.asarray(video)
  boxes = jnp.asarray(boxes, jnp.int32)
  height, width = video.shape[-3], video.shape[-2]
  top, left, h, w = (boxes[:, i].reshape(-1, 1, 1) for i in range(4))
  ys = jnp.arange(height)[None, :, None]
  xs = jnp.arange(width)[None, None, :]
  inside = (ys >= top) & (ys < top + h) & (xs >= left) & (xs < left + w)  # [B, H, W]
  return jnp.where(inside[:, None, :, :, None], noise, video)


def model_video(
  batch: Mapping[str, Any], key: jax.Array | None = None, *, normalization: str = "imagenet"
) -> jax.Array:
  """The normalised float32 video the model takes, from a pipeline batch.

  uint8 `batch["video"]`: flipped where `batch["flip"]` (within `batch["image_hw"]`'s content
  when the batch has it), normalised with `normalization`'s statistics, padding outside
  `image_hw` set to 0, then (with `batch["erase_box"]`) each box filled with standard-normal
  noise drawn from `key` (per pixel, channel and frame, as VideoMAE's pixel-mode random
  erasing). Float video: returned as is.
  """
  normalization_stats(normalization)  # an unknown name fails even for a float video
  video = batch["video"]
  if np.dtype(video.dtype) != np.uint8:
    return video
  hw = batch.get("image_hw")
  if "flip" in batch:
    video = flip(video, batch["flip"], None if hw is None else jnp.asarray(hw)[:, 1])
  video = normalize(video, normalization)
  if hw is not None:
    video = zero_padding(video, hw)
  if "erase_box" in batch:
    if key is None:
      raise ValueError("a batch with erase_box needs a key for the erasing noise")
    video = erase(video, batch["erase_box"], jax.random.normal(key, video.shape, jnp.float32))
  return video
