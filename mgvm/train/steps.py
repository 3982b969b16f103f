"""The jit-compiled train steps: pure functions `(state, batch) -> (state, metrics)`.

Randomness (docs/algorithms.md §0.3): `step_key = fold_in(rng, step)`, split into separate keys for
masking, dropout / drop path and mixup, plus `fold_in(step_key, AUGMENT_STREAM)` for the data
augmentation done on the accelerator; no stream is shared between two uses.

Batches may hold the pipeline's uint8 clips: each step turns them into the model's normalised
float video first (`mgvm.data.device_ops.model_video`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mgvm.data.device_ops import model_video
from mgvm.masking.core import Masker
from mgvm.train import losses, mixup

StepFn = Callable[[dict, dict], tuple[dict, dict]]


def augment_key(state) -> jax.Array:
  """This step's key for the accelerator's share of data augmentation (random-erasing noise):
  `fold_in(rng, step)` folded once more, apart from the three `step_keys`."""
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
  return jax.random.fold_in(step_key, AUGMENT_STREAM)


def step_keys(state) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mask, dropout, mixup) keys of this step: `fold_in(rng, step)` split three ways."""
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
  mask_key, drop_key, mix_key = jax.random.split(step_key, 3)
  return mask_key, drop_key, mix_key


AUGMENT_STREAM = 0x5EED  # fold_in data of `augment_key`


def apply_updates(
  state, grads, loss, tx: optax.GradientTransformation, schedule
) -> tuple[dict, dict]:
  """One optax update of `state["params"]`; returns the next state and the step's metrics."""
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  # update_norm catches an overflowing update while the loss is still finite, so a
  # non-finite state is detected before it can be checkpointed.
  metrics = {
    "loss": loss,
    "grad_norm": optax.global_norm(grads),
    "update_norm": optax.global_norm(updates),
    "lr": schedule(state["step"]),
  }
  new = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
  return new, metrics


def reconstruction_loss(
  model,
  masker: Masker,
  video: jax.Array,
  mask_key: jax.Array,
  *,
  deterministic: bool = True,
  rngs: nnx.Rngs | None = None,
):
  """Masks `video`, reconstructs the targets; returns (loss, (mask, predictions))."""
  tokens = model.encoder.embed(video)
  m = masker(mask_key, video, tokens)
  pred, _ = model(video, m, tokens=tokens, deterministic=deterministic, rngs=rngs)
  return losses.mae_loss(video, pred, m, model.tubelet), (m, pred)


def classify(
  model, video: jax.Array, compressor: Masker | None = None, key: jax.Array | None = None, **kwargs
):
  """`model(video)`; with a `compressor`, the encoder runs on its kept tokens only."""
  if compressor is None:
    return model(video, **kwargs)
  tokens = model.encoder.embed(video)
  kept = compressor(key if key is not None else jax.random.key(0), video, tokens).ids_keep
  return model(video, ids_keep=kept, tokens=tokens, **kwargs)


def pretrain_step(graphdef: nnx.GraphDef, masker: Masker, tx, schedule) -> StepFn:
  """MAE pre-training: mask, reconstruct normalized pixels, AdamW update."""

  def step(state, batch):
    mask_key, drop_key, _ = step_keys(state)
    video = model_video(batch)

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      loss, _ = reconstruction_loss(
        model,
        masker,
        video,
        mask_key,
        deterministic=False,
        rngs=nnx.Rngs(dropout=drop_key),
      )
      return loss

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    return apply_updates(state, grads, loss, tx, schedule)

  return step


def finetune_step(
  graphdef: nnx.GraphDef,
  tx,
  schedule,
  *,
  num_classes: int,
  label_smoothing: float = 0.0,
  mixup_config: Any = None,
  compressor: Masker | None = None,
) -> StepFn:
  """Classification: smoothed one-hot targets, optional mixup/cutmix, soft-target cross-entropy.

  With a `compressor` (`mgtc`, `everest`) the encoder sees only the tokens it keeps.
  """
  use_mixup = bool(mixup_config and mixup_config.enabled)

  def step(state, batch):
    mask_key, drop_key, mix_key = step_keys(state)
    video, labels = model_video(batch, augment_key(state)), batch["label"]
    targets = mixup.smooth_one_hot(labels, num_classes, label_smoothing)
    if use_mixup:
      video, targets = mixup.mixup_cutmix(
        mix_key,
        video,
        targets,
        mixup_alpha=mixup_config.mixup_alpha,
        cutmix_alpha=mixup_config.cutmix_alpha,
        prob=mixup_config.prob,
        switch_prob=mixup_config.switch_prob,
      )

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      logits, _ = classify(
        model, video, compressor, mask_key, deterministic=False, rngs=nnx.Rngs(dropout=drop_key)
      )
      return mixup.soft_cross_entropy(logits, targets), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    state, metrics = apply_updates(state, grads, loss, tx, schedule)
    metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == labels)
    return state, metrics

  return step


def compile_step(step: StepFn, state_shardings, mesh) -> Callable:
  """`jax.jit` with the state donated, the batch sharded on `data`, metrics replicated."""
  from mgvm.sharding import batch_sharding, replicated

  return jax.jit(
    step,
    in_shardings=(state_shardings, batch_sharding(mesh)),
    out_shardings=(state_shardings, replicated(mesh)),
    donate_argnums=(0,),
  )
