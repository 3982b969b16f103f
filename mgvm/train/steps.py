"""The jit-compiled train steps: pure functions `(state, batch) -> (state, metrics)`.

Randomness (docs/algorithms.md §0.3): `step_key = fold_in(rng, step)`, split into separate keys for
masking, dropout / drop path and mixup, plus `fold_in(step_key, AUGMENT_STREAM)` for the data
augmentation done on the accelerator; no stream is shared between two uses.

Batches may hold the pipeline's uint8 clips: each step turns them into the model's normalised
float video first (`mgvm.data.device_ops.model_video`, with the statistics of
`config.data.normalization`; pre-training's pixel targets un-normalise with the same ones).
A batch made with `make_dataset(..., motion=True)` also carries the codec motion field
(`motion`, `motion_valid`): `batch_motion` aligns it with the video (the same flip) and the
steps pass it to the masker or compressor, which reads it when it `needs_motion`
(docs/algorithms.md §6). Mixup / cutmix mix the pixels only: a codec-motion compressor scores
each row by its own clip's motion.

Gradient accumulation (`accum_steps` = k > 1, docs/scale.md): the step splits its batch of B
clips into k micro-batches of B/k (micro-batch i holds rows i, i + k, i + 2k, ..., so every
device keeps its own rows), runs forward + backward on one at a time in a `jax.lax.scan`, and
applies one update with the mean gradient. Everything random that is cheap and not part of the
backward pass is drawn once for the whole batch with the step's keys, exactly as with k = 1: the
pixels (flip, normalisation, random erasing), mixup / cutmix, label smoothing and the masks or
compressor's kept tokens (computed from the whole batch's embeddings, outside the gradient). Only
dropout / drop path draw per micro-batch, with `fold_in(dropout_key, i)`. Hence: with dropout and
drop path off, k micro-batches give the same loss, gradient and update as one batch, to float32
rounding, whatever the masker (random and tube masking included); with them on, each
micro-batch's draws differ from the whole batch's (the same distribution, not the same sample).
The loss must be a mean over clips (it is for pre-training and fine-tuning) for the mean of the
micro-batch losses to equal the batch's.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mgvm.data.device_ops import model_motion, model_video, normalization_stats
from mgvm.masking.core import Masker, kept_lengths
from mgvm.train import losses, mixup

StepFn = Callable[[dict, dict], tuple[dict, dict]]


# (mesh, the params' shardings) while `compile_step` traces a step on a mesh with an fsdp axis.
_FSDP: contextvars.ContextVar = contextvars.ContextVar("mgvm_fsdp", default=None)


@contextlib.contextmanager
def fsdp_tracing(mesh, param_shardings):
  """While a step is traced: `gather_params` and `shard_like_params` know the params' layout
  (`compile_step` sets this on a mesh with an `fsdp` axis; a no-op elsewhere)."""
  token = _FSDP.set((mesh, param_shardings))
  try:
    yield
  finally:
    _FSDP.reset(token)


def gather_params(params):
  """FSDP: the params all-gathered (replicated) for the forward and backward pass, so the
  activations keep the batch's sharding; under `jax.grad` their gradient is reduce-scattered
  back to the params' shards. Identity without FSDP."""
  ctx = _FSDP.get()
  if ctx is None:
    return params
  from mgvm.sharding import replicated

  rep = replicated(ctx[0])
  return jax.tree.map(lambda p: jax.lax.with_sharding_constraint(p, rep), params)


def shard_like_params(tree):
  """FSDP: a params-shaped tree (gradients, their running sum) constrained to the params'
  shardings. Identity without FSDP."""
  ctx = _FSDP.get()
  if ctx is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, ctx[1])


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
  grads = shard_like_params(grads)
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


def micro_batches(tree: Any, accum_steps: int) -> Any:
  """Every array of `tree` [B, ...] -> [accum_steps, B / accum_steps, ...]; micro-batch i holds rows
  i, i + k, i + 2k, ... (k = accum_steps), so a batch sharded over its leading axis splits
  without moving rows between devices when B is a multiple of k x devices."""
  k = int(accum_steps)

  def split(x):
    b = x.shape[0]
    if b % k:
      raise ValueError(
        f"a batch of {b} clips does not split into accum_steps={k} micro-batches; "
        f"batch_size must be a multiple of accum_steps x devices"
      )
    return jnp.swapaxes(x.reshape((b // k, k) + x.shape[1:]), 0, 1)

  return jax.tree.map(split, tree)


def accumulate_gradients(
  loss_fn: Callable, params, micro: Any, drop_key: jax.Array, accum_steps: int
) -> tuple[jax.Array, Any, Any]:
  """(mean loss, mean gradient, stacked aux) of `loss_fn(params, micro_batch, dropout_key) ->
  (loss, aux)` over the `accum_steps` micro-batches of `micro` (`micro_batches`), one at a time
  in a `jax.lax.scan`; micro-batch i gets `fold_in(drop_key, i)`. The gradient sum is kept in
  float32 in the params' shardings."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def body(carry, xs):
    loss_sum, grad_sum = carry
    i, batch = xs
    (loss, aux), grads = grad_fn(params, batch, jax.random.fold_in(drop_key, i))
    grads = shard_like_params(grads)
    grad_sum = jax.tree.map(lambda a, g: a + g.astype(a.dtype), grad_sum, grads)
    return (loss_sum + loss, grad_sum), aux

  zeros = shard_like_params(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))
  carry = (jnp.zeros((), jnp.float32), zeros)
  (loss_sum, grad_sum), aux = jax.lax.scan(
    body, carry, (jnp.arange(accum_steps, dtype=jnp.uint32), micro)
  )
  grads = jax.tree.map(lambda g, p: (g / accum_steps).astype(jnp.result_type(p)), grad_sum, params)
  return loss_sum / accum_steps, grads, aux


def batch_motion(batch) -> tuple[jax.Array | None, jax.Array | None]:
  """(`motion` [B, T, h, w, 2], `motion_valid` [B, T, h, w]) of a batch made with
  `make_dataset(..., motion=True)`, mirrored where `batch["flip"]` is set as `model_video`
  mirrors the frames (`device_ops.model_motion`); every block valid when the batch has no
  `motion_valid`; (None, None) for a batch without motion."""
  if "motion" not in batch:
    return None, None
  if "motion_valid" not in batch:
    batch = dict(batch, motion_valid=jnp.ones(jnp.shape(batch["motion"])[:-1], jnp.float32))
  return model_motion(batch)


def reconstruction_loss(
  model,
  masker: Masker,
  video: jax.Array,
  mask_key: jax.Array,
  *,
  deterministic: bool = True,
  rngs: nnx.Rngs | None = None,
  normalization: str = "imagenet",
  motion: jax.Array | None = None,
  motion_valid: jax.Array | None = None,
):
  """Masks `video` (normalised with `normalization`'s statistics; `motion` for a masker that
  needs it), reconstructs the targets; returns (loss, (mask, predictions))."""
  mean, std = normalization_stats(normalization)
  tokens = model.encoder.embed(video)
  m = masker(mask_key, video, tokens, motion=motion, motion_valid=motion_valid)
  pred, _ = model(video, m, tokens=tokens, deterministic=deterministic, rngs=rngs)
  return losses.mae_loss(video, pred, m, model.tubelet, mean=mean, std=std), (m, pred)


def classify_padded(
  model,
  tokens: jax.Array,
  ids_keep: jax.Array,
  lengths: jax.Array,
  *,
  deterministic: bool = True,
  rngs: nnx.Rngs | None = None,
):
  """`VideoClassifier`'s forward on padded kept tokens: the encoder on `ids_keep` [B, K] with
  only the first `lengths[b]` real (`kv_lengths`: no token attends to the padding), the mean
  over those, `fc_norm`, dropout, head. Returns (logits float32, {"pooled": ...})."""
  x = model.encoder.encode(
    tokens, ids_keep, deterministic=deterministic, rngs=rngs, kv_lengths=lengths
  )
  real = jnp.arange(x.shape[1], dtype=jnp.int32)[None, :, None] < lengths[:, None, None]
  total = jnp.sum(jnp.where(real, x.astype(jnp.float32), 0.0), axis=1)
  mean = total / jnp.maximum(lengths, 1)[:, None].astype(jnp.float32)
  pooled = model.fc_norm(mean.astype(x.dtype))
  logits = model.head(model.fc_dropout(pooled, deterministic=deterministic, rngs=rngs))
  return logits.astype(jnp.float32), {"pooled": pooled}


def classify(
  model,
  video: jax.Array,
  compressor: Masker | None = None,
  key: jax.Array | None = None,
  *,
  motion: jax.Array | None = None,
  motion_valid: jax.Array | None = None,
  **kwargs,
):
  """`model(video)`; with a `compressor`, the encoder runs on its kept tokens only (a
  `variable_length` one's padded tokens through `classify_padded`) and `aux["tokens"]` [B]
  counts them. `motion` / `motion_valid`: the codec motion field, for a compressor that needs
  it."""
  if compressor is None:
    return model(video, **kwargs)
  tokens = model.encoder.embed(video)
  key = key if key is not None else jax.random.key(0)
  m = compressor(key, video, tokens, motion=motion, motion_valid=motion_valid)
  lengths = kept_lengths(m)
  if compressor.variable_length:
    logits, aux = classify_padded(model, tokens, m.ids_keep, lengths, **kwargs)
  else:
    logits, aux = model(video, ids_keep=m.ids_keep, tokens=tokens, **kwargs)
  return logits, {**aux, "tokens": lengths}


def pretrain_step(
  graphdef: nnx.GraphDef,
  masker: Masker,
  tx,
  schedule,
  accum_steps=1,
  *,
  normalization: str = "imagenet",
) -> StepFn:
  """MAE pre-training: mask, reconstruct normalized pixels, AdamW update (over `accum_steps`
  micro-batches: the module docstring says which equality holds). `normalization`: the input's
  statistics (`config.data.normalization`), which the pixel targets undo."""
  mean, std = normalization_stats(normalization)

  def step(state, batch):
    mask_key, drop_key, _ = step_keys(state)
    video = model_video(batch, normalization=normalization)
    motion, motion_valid = batch_motion(batch)
    if accum_steps > 1:
      model = nnx.merge(graphdef, gather_params(state["params"]))
      tokens = model.encoder.embed(video)
      m = masker(mask_key, video, tokens, motion=motion, motion_valid=motion_valid)
      m = jax.lax.stop_gradient(m)

      def micro_loss(params, mb, key):
        model = nnx.merge(graphdef, gather_params(params))
        pred, _ = model(mb["video"], mb["mask"], deterministic=False, rngs=nnx.Rngs(dropout=key))
        loss = losses.mae_loss(mb["video"], pred, mb["mask"], model.tubelet, mean=mean, std=std)
        return loss, None

      micro = micro_batches({"video": video, "mask": m}, accum_steps)
      loss, grads, _ = accumulate_gradients(
        micro_loss, state["params"], micro, drop_key, accum_steps
      )
      return apply_updates(state, grads, loss, tx, schedule)

    def loss_fn(params):
      model = nnx.merge(graphdef, gather_params(params))
      loss, _ = reconstruction_loss(
        model,
        masker,
        video,
        mask_key,
        deterministic=False,
        rngs=nnx.Rngs(dropout=drop_key),
        normalization=normalization,
        motion=motion,
        motion_valid=motion_valid,
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
  accum_steps: int = 1,
  normalization: str = "imagenet",
) -> StepFn:
  """Classification: smoothed one-hot targets, optional mixup/cutmix, soft-target cross-entropy.

  With a `compressor` (`mgtc`, `everest`, `rlt`) the encoder sees only the tokens it keeps
  (a `variable_length` one's through `classify_padded`; a codec-motion one reads the batch's
  `motion`, `batch_motion`). With
  `accum_steps` > 1 the batch is augmented, mixed and compressed whole, then split into
  micro-batches (the module docstring says which equality holds). `normalization`: the input's
  statistics (`config.data.normalization`).
  """
  use_mixup = bool(mixup_config and mixup_config.enabled)
  normalization_stats(normalization)  # an unknown name fails here, not in the first step

  def step(state, batch):
    mask_key, drop_key, mix_key = step_keys(state)
    video = model_video(batch, augment_key(state), normalization=normalization)
    motion, motion_valid = batch_motion(batch)
    labels = batch["label"]
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

    if accum_steps > 1:
      whole = {"video": video, "targets": targets}
      if compressor is not None:
        model = nnx.merge(graphdef, gather_params(state["params"]))
        tokens = model.encoder.embed(video)
        m = compressor(mask_key, video, tokens, motion=motion, motion_valid=motion_valid)
        whole["ids_keep"] = jax.lax.stop_gradient(m.ids_keep)
        if compressor.variable_length:
          whole["lengths"] = kept_lengths(m)

      def micro_loss(params, mb, key):
        model = nnx.merge(graphdef, gather_params(params))
        kwargs = dict(deterministic=False, rngs=nnx.Rngs(dropout=key))
        if "lengths" in mb:
          tokens = model.encoder.embed(mb["video"])
          logits, _ = classify_padded(model, tokens, mb["ids_keep"], mb["lengths"], **kwargs)
        else:
          logits, _ = model(mb["video"], ids_keep=mb.get("ids_keep"), **kwargs)
        return mixup.soft_cross_entropy(logits, mb["targets"]), logits

      micro = micro_batches(whole, accum_steps)
      loss, grads, logits = accumulate_gradients(
        micro_loss, state["params"], micro, drop_key, accum_steps
      )
      state, metrics = apply_updates(state, grads, loss, tx, schedule)
      hits = jnp.argmax(logits, -1) == micro_batches(labels, accum_steps)
      metrics["accuracy"] = jnp.mean(hits)
      return state, metrics

    def loss_fn(params):
      model = nnx.merge(graphdef, gather_params(params))
      logits, _ = classify(
        model,
        video,
        compressor,
        mask_key,
        motion=motion,
        motion_valid=motion_valid,
        deterministic=False,
        rngs=nnx.Rngs(dropout=drop_key),
      )
      return mixup.soft_cross_entropy(logits, targets), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    state, metrics = apply_updates(state, grads, loss, tx, schedule)
    metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == labels)
    return state, metrics

  return step


def compile_step(step: StepFn, state_shardings, mesh) -> Callable:
  """`jax.jit` with the state donated, the batch sharded on `data` (and `fsdp`), metrics
  replicated. On a mesh with an `fsdp` axis the step is traced inside `fsdp_tracing`, so the
  steps of this module gather the params for the forward pass and keep gradients sharded."""
  from mgvm.sharding import FSDP_AXIS, batch_sharding, replicated

  traced = step
  if FSDP_AXIS in mesh.axis_names:

    @functools.wraps(step)
    def traced(state, batch):
      with fsdp_tracing(mesh, state_shardings["params"]):
        return step(state, batch)

  return jax.jit(
    traced,
    in_shardings=(state_shardings, batch_sharding(mesh)),
    out_shardings=(state_shardings, replicated(mesh)),
    donate_argnums=(0,),
  )
