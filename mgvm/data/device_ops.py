"""The per-pixel half of the input pipeline, on the accelerator: uint8 clips → model input.

The host decodes (only the crop window), resizes to the model size and emits uint8
`[B, T, S, S, 3]`, plus the random choices it drew per clip from the clip's seed: `flip` (bool
[B]) and `erase_box` (int32 [B, 4]: top, left, height, width; 0 × 0 = nothing erased).
`model_video` then flips, normalises and erases inside the jitted step, where the pixels are
cheap (docs/data.md, "Where each step runs"). A float video (already normalised, e.g. from the
detection pipeline or a test) passes through unchanged.

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


def _normalize_table() -> np.ndarray:
  """float32 [256, 3]: `(v / 255 - MEAN[c]) / STD[c]` for every uint8 value v and channel c, by
  the operations of `mgvm.data.video_ops.normalize` in the same order."""
  values = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
  return (values - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


_TABLE = _normalize_table()


def normalize(video) -> jax.Array:
  """float32 `(video / 255 - MEAN) / STD` per channel (RGB last), equal to the bit to
  `mgvm.data.video_ops.normalize`: uint8 pixels are looked up in a 256 × 3 table (compiled
  arithmetic may fuse and round differently); other dtypes are computed."""
  video = jnp.asarray(video)
  if video.dtype == jnp.uint8:
    return jnp.asarray(_TABLE)[video.astype(jnp.int32), jnp.arange(3)]
  x = video.astype(jnp.float32) / jnp.float32(255.0)
  return (x - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


def flip(video, flags) -> jax.Array:
  """Mirrors (width axis) the clips of `video` [B, T, H, W, C] whose `flags` [B] are set."""
  video = jnp.asarray(video)
  flags = jnp.asarray(flags, bool).reshape((-1,) + (1,) * (video.ndim - 1))
  return jnp.where(flags, video[..., ::-1, :], video)


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


def model_video(batch: Mapping[str, Any], key: jax.Array | None = None) -> jax.Array:
  """The normalised float32 video the model takes, from a pipeline batch.

  uint8 `batch["video"]`: flipped where `batch["flip"]`, normalised, then (with
  `batch["erase_box"]`) each box filled with standard-normal noise drawn from `key` (per pixel,
  channel and frame, as VideoMAE's pixel-mode random erasing). Float video: returned as is.
  """
  video = batch["video"]
  if np.dtype(video.dtype) != np.uint8:
    return video
  if "flip" in batch:
    video = flip(video, batch["flip"])
  video = normalize(video)
  if "erase_box" in batch:
    if key is None:
      raise ValueError("a batch with erase_box needs a key for the erasing noise")
    video = erase(video, batch["erase_box"], jax.random.normal(key, video.shape, jnp.float32))
  return video
