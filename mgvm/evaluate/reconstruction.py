"""Masked reconstruction on held-out clips: normalized-pixel loss and PSNR with a fixed masking key."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.data.device_ops import model_video, normalization_stats
from mgvm.masking.core import Masker
from mgvm.train import losses


def reconstruct_pixels(
  video: jax.Array, pred: jax.Array, m, tubelet, *, normalization: str = "imagenet"
) -> tuple[jax.Array, jax.Array]:
  """Predicted and true target tubelets in [0, 1] pixels, [B, M, P·C] each.

  Predictions are normalized-pixel values; they are mapped back with each true tubelet's
  per-channel mean and std (as VideoMAE's visualisation does). `video` is normalised with
  `normalization`'s statistics.
  """
  mean, std = normalization_stats(normalization)
  raw = losses.pixel_targets(video, tubelet, normalize=False, mean=mean, std=std)
  b, n, pc = raw.shape
  c = video.shape[-1]
  raw = jnp.take_along_axis(raw, m.ids_target[..., None], axis=1).reshape(b, -1, pc // c, c)
  mean = raw.mean(axis=2, keepdims=True)
  std = jnp.sqrt(raw.var(axis=2, ddof=1, keepdims=True)) + 1e-6
  recon = pred.astype(jnp.float32).reshape(raw.shape) * std + mean
  return jnp.clip(recon, 0.0, 1.0).reshape(b, -1, pc), raw.reshape(b, -1, pc)


def per_clip_metrics(
  model,
  masker: Masker,
  video: jax.Array,
  key: jax.Array,
  *,
  normalization: str = "imagenet",
  motion: jax.Array | None = None,
  motion_valid: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """[B] normalized-pixel loss and PSNR (dB, peak 1) over each clip's hidden target tubelets
  (`video` normalised with `normalization`'s statistics, which the targets undo; `motion` /
  `motion_valid` for a masker that needs the codec motion field)."""
  mean, std = normalization_stats(normalization)
  tokens = model.encoder.embed(video)
  m = masker(key, video, tokens, motion=motion, motion_valid=motion_valid)
  pred, _ = model(video, m, tokens=tokens, deterministic=True)
  targets = jnp.take_along_axis(
    losses.pixel_targets(video, model.tubelet, mean=mean, std=std), m.ids_target[..., None], 1
  )
  weights = losses.target_weights(m)
  count = jnp.maximum(weights.sum(1), 1.0)
  loss = (jnp.mean(jnp.square(pred.astype(jnp.float32) - targets), -1) * weights).sum(1) / count
  recon, truth = reconstruct_pixels(video, pred, m, model.tubelet, normalization=normalization)
  mse = (jnp.mean(jnp.square(recon - truth), -1) * weights).sum(1) / count
  return {"loss": loss, "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))}


def evaluate(
  graphdef: nnx.GraphDef,
  params,
  masker: Masker,
  batches: Iterable[dict],
  mesh,
  seed: int = 0,
  normalization: str = "imagenet",
) -> dict[str, float | int]:
  """Mean loss and PSNR over every real (unpadded) clip; batch i is masked with fold_in(key, i).
  `normalization`: the clips' statistics (`config.data.normalization`). A masker that
  `needs_motion` reads the batches' codec motion field (`motion`, `motion_valid`)."""
  from mgvm.evaluate.classification import motion_inputs
  from mgvm.sharding import gather_hosts, host_rows, to_global
  from mgvm.train.steps import batch_motion

  normalization_stats(normalization)

  @jax.jit
  def run(params, inputs, key):
    video = model_video({"video": inputs["video"]}, normalization=normalization)  # uint8 clips
    motion, motion_valid = batch_motion(inputs)
    return per_clip_metrics(
      nnx.merge(graphdef, params),
      masker,
      video,
      key,
      normalization=normalization,
      motion=motion,
      motion_valid=motion_valid,
    )

  key = jax.random.key(seed)
  totals = np.zeros(3)  # loss, psnr, clips of this host
  for i, batch in enumerate(batches):
    inputs = to_global({"video": batch["video"], **motion_inputs(batch, masker)}, mesh)
    out = host_rows(run(params, inputs, jax.random.fold_in(key, i)), mesh)
    mask = np.asarray(batch.get("mask", np.ones(len(batch["video"]), bool)), bool)
    for j, name in enumerate(("loss", "psnr")):
      totals[j] += float(out[name][mask].sum())
    totals[2] += int(mask.sum())
  loss, psnr, count = gather_hosts({"totals": totals[None]})["totals"].sum(0)  # every host's
  if not count:
    raise ValueError("no evaluation clips were seen (is the split empty?)")
  return {"loss": float(loss / count), "psnr": float(psnr / count), "num_clips": int(count)}
