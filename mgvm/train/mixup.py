"""Mixup / CutMix for video batches, label smoothing and soft-target cross entropy.

Follows timm's `Mixup` in mode "batch" (the VideoMAE fine-tuning default, docs/algorithms.md §1.6):
- with probability `prob` the batch is mixed, otherwise lam = 1 (identity);
- when both alphas are > 0, CutMix is chosen with probability `switch_prob`, else Mixup;
  lam ~ Beta(alpha, alpha) of the chosen method;
- every sample is mixed with the batch reversed (sample i with sample B - 1 - i);
- CutMix pastes one box, shared by the whole batch and all frames: cut size
  `int(H * sqrt(1 - lam))` x `int(W * sqrt(1 - lam))`, centre uniform over the pixels, edges
  `centre -/+ cut // 2` clipped to the frame; lam is then corrected to `1 - box area / (H W)`;
- targets (already one-hot / smoothed) are mixed with the same lam.

Pure JAX with static shapes: `mixup_cutmix` jits and runs inside the train step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """[B] int labels -> [B, C]: off = smoothing / C, on = 1 - smoothing + off (timm)."""
  if not 0.0 <= smoothing < 1.0:
    raise ValueError(f"smoothing={smoothing} must be in [0, 1).")
  off = smoothing / num_classes
  on = 1.0 - smoothing + off
  return jnp.where(jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_), on, off).astype(
    jnp.float32
  )


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over the batch of sum_c -targets * log_softmax(logits) (computed in float32)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(jnp.sum(-targets.astype(jnp.float32) * logp, axis=-1))


def apply_mixup(video: jax.Array, targets: jax.Array, lam) -> tuple[jax.Array, jax.Array]:
  """x * lam + x[::-1] * (1 - lam) for the video and the targets."""
  lam = jnp.asarray(lam, jnp.float32)
  mixed = video * lam.astype(video.dtype) + video[::-1] * (1 - lam).astype(video.dtype)
  return mixed, targets * lam + targets[::-1] * (1 - lam)


def box_lam(box, height: int, width: int) -> jax.Array:
  """lam after CutMix with `box` = (y_lo, y_hi, x_lo, x_hi): 1 - box area / frame area."""
  y_lo, y_hi, x_lo, x_hi = box
  area = (y_hi - y_lo) * (x_hi - x_lo)
  return 1.0 - jnp.asarray(area, jnp.float32) / float(height * width)


def box_mask(box, height: int, width: int) -> jax.Array:
  """[H, W] bool, True inside rows [y_lo, y_hi) and columns [x_lo, x_hi)."""
  y_lo, y_hi, x_lo, x_hi = box
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  return (rows >= y_lo) & (rows < y_hi) & (cols >= x_lo) & (cols < x_hi)


def apply_cutmix(video: jax.Array, targets: jax.Array, box) -> tuple[jax.Array, jax.Array]:
  """Pastes `box` of the reversed batch into every frame; targets mixed with the area lam."""
  _, _, height, width, _ = video.shape
  inside = box_mask(box, height, width)[None, None, :, :, None]
  lam = box_lam(box, height, width)
  return jnp.where(inside, video[::-1], video), targets * lam + targets[::-1] * (1 - lam)


def rand_box(key: jax.Array, lam, height: int, width: int) -> tuple[jax.Array, ...]:
  """timm `rand_bbox`: cut ratio sqrt(1 - lam), uniform integer centre, edges clipped."""
  ratio = jnp.sqrt(jnp.clip(1.0 - jnp.asarray(lam, jnp.float32), 0.0, 1.0))
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  key_y, key_x = jax.random.split(key)
  cy = jax.random.randint(key_y, (), 0, height)
  cx = jax.random.randint(key_x, (), 0, width)
  y_lo = jnp.clip(cy - cut_h // 2, 0, height)
  y_hi = jnp.clip(cy + cut_h // 2, 0, height)
  x_lo = jnp.clip(cx - cut_w // 2, 0, width)
  x_hi = jnp.clip(cx + cut_w // 2, 0, width)
  return y_lo, y_hi, x_lo, x_hi


def mixup_cutmix(
  key: jax.Array,
  video: jax.Array,
  targets: jax.Array,
  *,
  mixup_alpha: float = 0.8,
  cutmix_alpha: float = 1.0,
  prob: float = 1.0,
  switch_prob: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
  """timm batch-mode Mixup/CutMix on video [B, T, H, W, C] and soft targets [B, C].

  Alphas and probabilities are Python floats (static). Both alphas 0 (or prob 0) returns the
  inputs unchanged.
  """
  if video.ndim != 5:
    raise ValueError(f"video must be [B, T, H, W, C]; got shape {video.shape}.")
  if targets.ndim != 2 or targets.shape[0] != video.shape[0]:
    raise ValueError(
      f"targets must be [B, num_classes] with B={video.shape[0]}; got shape {targets.shape}."
    )
  for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
    if value < 0:
      raise ValueError(f"{name}={value} must be >= 0.")
  for name, value in (("prob", prob), ("switch_prob", switch_prob)):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f"{name}={value} must be in [0, 1].")
  if (mixup_alpha <= 0 and cutmix_alpha <= 0) or prob <= 0:
    return video, targets
  _, _, height, width, _ = video.shape
  key_apply, key_switch, key_mix, key_cut, key_box = jax.random.split(key, 5)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(key_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mix = (
    jax.random.beta(key_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.float32(1.0)
  )
  lam_cut = (
    jax.random.beta(key_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.float32(1.0)
  )
  apply = jax.random.uniform(key_apply) < prob
  lam_mix = jnp.where(apply, lam_mix, 1.0)
  lam_cut = jnp.where(apply, lam_cut, 1.0)

  def cutmix(operands):
    v, t = operands
    # lam = 1 gives an empty box (cut size 0), i.e. the identity.
    return apply_cutmix(v, t, rand_box(key_box, lam_cut, height, width))

  def mixup(operands):
    v, t = operands
    return apply_mixup(v, t, lam_mix)

  return jax.lax.cond(use_cutmix, cutmix, mixup, (video, targets))
