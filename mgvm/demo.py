"""A self-contained VideoMAE pre-training run on generated moving-square clips.

`train.py` runs `pretrain` (`python train.py --config configs/pretrain.py:runlocal --workdir DIR`
trains a tiny VideoMAE on CPU for 120 jit-compiled AdamW steps). It exercises the public
pieces (model, masker, loss) exactly as a training step uses them; the full data pipeline
and loop arrive with issue #3.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mgvm import masking, models
from mgvm.train.losses import IMAGENET_MEAN, IMAGENET_STD, mae_loss


def moving_squares(key: jax.Array, batch: int, num_frames: int, image_size: int) -> jax.Array:
  """[B, T, S, S, 3] ImageNet-normalized clips: a coloured square moving over a smooth gradient."""
  k_bg, k_col, k_pos, k_vel = jax.random.split(key, 4)
  size = image_size
  side = max(2, size // 4)
  slope = jax.random.uniform(k_bg, (batch, 2, 3), minval=-1.0, maxval=1.0)
  ramp = jnp.linspace(-0.2, 0.2, size)
  background = (0.4 + slope[:, None, None, None, 0] * ramp[:, None, None]
                + slope[:, None, None, None, 1] * ramp[None, :, None])      # [B, 1, S, S, 3]
  colour = jax.random.uniform(k_col, (batch, 1, 1, 1, 3), minval=0.5, maxval=1.0)
  start = jax.random.uniform(k_pos, (batch, 2), minval=0, maxval=size - side)
  velocity = jax.random.uniform(k_vel, (batch, 2), minval=-2.0, maxval=2.0)
  t = jnp.arange(num_frames, dtype=jnp.float32)
  corner = jnp.mod(start[:, None] + velocity[:, None] * t[None, :, None], size - side)  # [B, T, 2]
  coords = jnp.arange(size, dtype=jnp.float32)
  inside_y = (coords >= corner[..., 0:1]) & (coords < corner[..., 0:1] + side)   # [B, T, S]
  inside_x = (coords >= corner[..., 1:2]) & (coords < corner[..., 1:2] + side)
  square = (inside_y[..., :, None] & inside_x[..., None, :])[..., None]          # [B, T, S, S, 1]
  frames = jnp.where(square, colour, background)
  return (frames - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def build_mae(config) -> models.VideoMAE:
  """A VideoMAE from `config.model` (named size, or custom when `size` is empty)."""
  mc = config.model
  custom = {k: mc[k] or None for k in ("dim", "depth", "num_heads", "decoder_dim",
                                        "decoder_depth", "decoder_heads")}
  return models.VideoMAE(mc.size or None, **custom, num_frames=config.num_frames,
                         image_size=config.image_size, drop_path_rate=mc.drop_path_rate,
                         dtype=jnp.dtype(mc.dtype), rngs=nnx.Rngs(config.seed))


def decay_mask(params):
  """Weight decay on matrices only: no decay on 1-D params, biases or the mask token."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x.ndim > 1 and "mask_token" not in jax.tree_util.keystr(path), params)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with the reference LR scaling (batch / 256), warmup from 0, cosine to min_lr."""
  peak = config.base_lr * config.batch_size / 256
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, peak, config.warmup_steps, max(config.total_steps, config.warmup_steps + 1),
      end_value=config.min_lr * config.batch_size / 256)
  tx = optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=1e-8,
                   weight_decay=config.weight_decay, mask=decay_mask)
  return tx, schedule


def reconstruction_loss(mae: models.VideoMAE, masker, video: jax.Array, mask_key: jax.Array, *,
                        deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
  """Masks `video` with `masker`, reconstructs the targets, returns the normalized-pixel loss."""
  m = masker(mask_key, video, None)
  pred, _ = mae(video, m, deterministic=deterministic, rngs=rngs)
  return mae_loss(video, pred, m, mae.tubelet)


def pretrain(config, workdir: str | None = None,
             log: Callable[[str], None] = print) -> list[dict]:
  """Runs `config.total_steps` pre-training steps; returns (and logs) the metrics."""
  model = build_mae(config)
  masker = masking.build(config.masking, model.grid)
  graphdef, params = nnx.split(model)
  tx, schedule = make_optimizer(config)
  opt_state = tx.init(params)
  rng = jax.random.key(config.seed)
  data_key, step_rng = jax.random.split(rng)
  log(f"peak lr {schedule(config.warmup_steps):.3g} = base_lr {config.base_lr:g} x "
      f"batch {config.batch_size} / 256; grid {model.grid}; masker {dict(config.masking)}")

  @jax.jit
  def train_step(params, opt_state, video, step):
    mask_key, drop_key = jax.random.split(jax.random.fold_in(step_rng, step))

    def loss_fn(params):
      return reconstruction_loss(nnx.merge(graphdef, params), masker, video, mask_key,
                                 deterministic=False, rngs=nnx.Rngs(dropout=drop_key))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  metrics, start = [], time.time()
  for step in range(config.total_steps):
    video = moving_squares(jax.random.fold_in(data_key, step), config.batch_size,
                           config.num_frames, config.image_size)
    params, opt_state, loss = train_step(params, opt_state, video, step)
    if (step + 1) % config.log_every_steps == 0 or step + 1 == config.total_steps:
      loss = float(loss)
      if not jnp.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss} at step {step + 1}")
      record = dict(step=step + 1, loss=loss, lr=float(schedule(step)),
                    seconds=round(time.time() - start, 2))
      metrics.append(record)
      log(json.dumps(record))
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in metrics)
  return metrics

