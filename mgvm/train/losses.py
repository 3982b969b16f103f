"""Reconstruction targets and losses.

The normalized-pixel target follows the VideoMAE reference exactly (docs/algorithms.md §1.3):
un-normalize the clip to [0, 1], split it into tubelets, and per tubelet and per colour
channel subtract the mean over the tubelet's pixels and divide by
(sqrt(unbiased variance) + 1e-6); flatten pixel-major, channel-minor.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from mgvm.data.device_ops import MEAN, STD

IMAGENET_MEAN, IMAGENET_STD = MEAN, STD


def patchify(video: jax.Array, tubelet: Sequence[int]) -> jax.Array:
  """[B, T, H, W, C] -> [B, N, P, C], N in (t, h, w) order, P = pt·ph·pw pixel-major."""
  b, t, h, w, c = video.shape
  pt, ph, pw = tubelet
  if t % pt or h % ph or w % pw:
    raise ValueError(f"video shape {video.shape} is not divisible by the tubelet {tuple(tubelet)}.")
  x = video.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw, c)


def unpatchify(patches: jax.Array, grid: Sequence[int], tubelet: Sequence[int]) -> jax.Array:
  """Inverse of `patchify` after flattening: [B, N, P·C] -> [B, T, H, W, C]."""
  b = patches.shape[0]
  (gt, gh, gw), (pt, ph, pw) = grid, tubelet
  c = patches.shape[-1] // math.prod(tubelet)
  x = patches.reshape(b, gt, gh, gw, pt, ph, pw, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, gt * pt, gh * ph, gw * pw, c)


def pixel_targets(
  video: jax.Array,
  tubelet: Sequence[int] = (2, 16, 16),
  *,
  normalize: bool = True,
  mean: Sequence[float] | None = IMAGENET_MEAN,
  std: Sequence[float] | None = IMAGENET_STD,
  eps: float = 1e-6,
) -> jax.Array:
  """Reconstruction targets [B, N, P·C] for a normalized clip [B, T, H, W, C] (float32, no grad).

  `mean`/`std` undo the input normalization (None: the clip is already in pixel units).
  `normalize=False` gives the raw un-normalized tubelet pixels.
  """
  x = jax.lax.stop_gradient(video).astype(jnp.float32)
  if mean is not None:
    x = x * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)
  x = patchify(x, tubelet)
  if normalize:
    if x.shape[2] < 2:
      raise ValueError("normalized-pixel targets need at least 2 pixels per tubelet.")
    centred = x - x.mean(axis=2, keepdims=True)
    x = centred / (jnp.sqrt(x.var(axis=2, ddof=1, keepdims=True)) + eps)
  return x.reshape(x.shape[0], x.shape[1], -1)


def target_weights(m) -> jax.Array:
  """[B, M] float32: 1 where a decoded token was hidden from the encoder, else 0.

  For random/tube/EVEREST masking every target is hidden (all ones); running-cell
  decoding also decodes visible tokens, which the reference leaves out of the loss.
  """
  return jnp.take_along_axis(m.mask, m.ids_target, axis=1).astype(jnp.float32)


def mae_loss(
  video: jax.Array,
  pred: jax.Array,
  m,
  tubelet: Sequence[int] = (2, 16, 16),
  *,
  normalize: bool = True,
  mean: Sequence[float] | None = IMAGENET_MEAN,
  std: Sequence[float] | None = IMAGENET_STD,
) -> jax.Array:
  """Mean squared error between `pred` [B, M, P·C] and the targets at `m.ids_target`.

  Per-token MSE (mean over the P·C values), averaged over the targets that were
  hidden from the encoder: the reference's plain MSE when all targets are hidden.
  """
  targets = pixel_targets(video, tubelet, normalize=normalize, mean=mean, std=std)
  targets = jnp.take_along_axis(targets, m.ids_target[..., None], axis=1)
  if pred.shape != targets.shape:
    raise ValueError(
      f"predictions {pred.shape} do not match targets {targets.shape} "
      f"(tubelet {tuple(tubelet)}, {m.ids_target.shape[1]} target tokens)."
    )
  per_token = jnp.mean(jnp.square(pred.astype(jnp.float32) - targets), axis=-1)
  weights = target_weights(m)
  return jnp.sum(per_token * weights) / jnp.maximum(jnp.sum(weights), 1.0)
