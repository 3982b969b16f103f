"""The training loop behind `train.py`: data → sharded state → one compiled step → checkpoints, metrics.

Order (big_vision's): mesh → input pipeline → eval_shape → shardings → jitted init (or restore)
→ donate the state to a step compiled once.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from mgvm import masking
from mgvm.train import sharding as sharding_lib
from mgvm.train import state as state_lib
from mgvm.train import steps as steps_lib

CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(FloatingPointError):
  """The loss (or gradient norm) became NaN/inf; nothing non-finite was saved."""


def checkpoint_dir(workdir: str) -> str:
  """`workdir/checkpoints`; a path that already is a checkpoint directory is kept."""
  if os.path.basename(os.path.normpath(workdir)) == CHECKPOINT_DIR:
    return workdir
  return os.path.join(workdir, CHECKPOINT_DIR)


def num_classes_for(config, source) -> int:
  if config.get("num_classes"):
    if source.num_classes and config.num_classes != source.num_classes:
      raise ValueError(f"config.num_classes={config.num_classes} but the data set at "
                       f"{source.root} has {source.num_classes} classes")
    return config.num_classes
  if not source.num_classes:
    raise ValueError(f"set config.num_classes: the data set at {source.root} does not list its classes")
  return source.num_classes


def classifier_compressor(config, grid):
  """The compressor of a fine-tuning config (`config.masking`, kind mgtc / everest), or None."""
  spec = config.get("masking")
  if spec is None or not spec.get("kind"):
    return None
  built = masking.build(spec, grid)
  if built.num_target:
    raise ValueError(f"fine-tuning takes a compressor in config.masking (kinds "
                     f"{sorted(masking.COMPRESSORS)}), got kind {built.kind!r}, which masks tokens "
                     f"for reconstruction")
  return built


def make_train_dataset(config, source, local_batch: int, start_step: int, num_classes=None):
  d = config.data
  if config.task == "detect":
    from mgvm.data import detection
    return detection.make_detection_dataset(
        source.split(d.train_split), mode="train", num_frames=config.num_frames,
        image_size=config.image_size, batch_size=local_batch, num_classes=num_classes,
        max_boxes=config.evad.max_boxes, target_fps=d.target_fps or None,
        frame_stride=d.frame_stride, flip=d.flip, seed=config.seed,
        shuffle_buffer=d.shuffle_buffer, start_step=start_step,
        process_index=jax.process_index(), process_count=jax.process_count())
  from mgvm.data import pipeline
  finetune = config.task == "finetune"
  return pipeline.make_dataset(
      source.split(d.train_split), mode=config.task, num_frames=config.num_frames,
      image_size=config.image_size, batch_size=local_batch, target_fps=d.target_fps or None,
      frame_stride=d.frame_stride, temporal=d.temporal, seed=config.seed,
      shuffle_buffer=d.shuffle_buffer, flip=d.flip, crop_scale=tuple(d.crop_scale),
      rand_augment=d.rand_augment if finetune else "",
      random_erase=d.random_erase if finetune else 0.0, num_sample=d.num_sample,
      start_step=start_step, process_index=jax.process_index(),
      process_count=jax.process_count(), parse_fn=source.parse_fn)


def _fetch(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
  host = jax.device_get([m for _, m in pending])
  return [(step, {k: float(v) for k, v in m.items()}) for (step, _), m in zip(pending, host)]


def _check_finite(records, last_saved: int | None) -> None:
  for step, m in records:
    bad = {k: v for k, v in m.items() if k in ("loss", "grad_norm", "update_norm") and not math.isfinite(v)}
    if bad:
      where = f"step {last_saved}" if last_saved is not None else "none was written"
      raise NonFiniteLossError(
          f"non-finite {bad} at step {step}; stopping before anything non-finite is saved "
          f"(last checkpoint: {where}). Lower optim.base_lr, set optim.clip_grad_norm, or "
          f"check the input data.")


def train(config, workdir: str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Trains `config.task` ("pretrain" | "finetune" | "detect") in `workdir`, resuming if it holds a checkpoint."""
  from mgvm import metrics as metrics_lib
  from mgvm.data import sources
  from mgvm.train import checkpoint as checkpoint_lib
  from mgvm.train import optim

  sharding_lib.maybe_initialize_distributed()
  os.makedirs(workdir, exist_ok=True)
  writer_log = print if log is None else log
  mesh = sharding_lib.make_mesh(config.mesh.data)
  local_batch = sharding_lib.check_batch_size(config.batch_size, mesh)
  source = sources.resolve(config.data, log=writer_log)
  num_classes = num_classes_for(config, source) if config.task != "pretrain" else None

  model_fn = lambda: state_lib.build_model(config, num_classes=num_classes)  # noqa: E731
  abstract_model = nnx.eval_shape(model_fn)
  abstract_params = nnx.state(abstract_model, nnx.Param)
  depth = state_lib.num_layers(abstract_model)
  tx, schedule = optim.make_optimizer(config.optim, abstract_params,
                                      global_batch_size=config.batch_size,
                                      total_steps=config.total_steps, num_layers=depth)

  ckpt = checkpoint_lib.Checkpointer(checkpoint_dir(workdir), max_to_keep=config.keep_checkpoints,
                                     save_every_steps=config.checkpoint_every_steps)
  latest = ckpt.latest_step()
  init_params = None
  if latest is None and config.get("init_from"):
    pretrained = checkpoint_lib.load_params(checkpoint_dir(config.init_from))
    init_params = state_lib.encoder_from_pretrained(
        abstract_params, _pure(pretrained), log=writer_log)
  graphdef, abstract_state, shardings, init = state_lib.plan(
      model_fn, tx, mesh, config.seed, init_params=init_params)
  state = init() if latest is None else ckpt.restore(abstract_state, latest)
  start = int(jax.device_get(state["step"]))

  writer = metrics_lib.MetricWriter(workdir, total_steps=config.total_steps,
                                    tensorboard=config.tensorboard, resume_step=start)
  say = writer.log if log is None else log
  say(f"{config.task}: {jax.device_count()} devices, mesh {dict(mesh.shape)}, global batch "
      f"{config.batch_size} ({local_batch} per host); peak lr {float(schedule(config.optim.warmup_steps)):.3g}"
      f" = base_lr {config.optim.base_lr:g} x global batch {config.batch_size} / 256")
  say(f"resumed from step {start}" if latest is not None else "starting from step 0")

  if config.task == "pretrain":
    masker = masking.build(config.masking, abstract_model.grid)
    step = steps_lib.pretrain_step(graphdef, masker, tx, schedule)
  elif config.task == "detect":
    from mgvm.train import detection as detection_lib
    step = detection_lib.detect_step(graphdef, tx, schedule, image_hw=abstract_model.image_hw,
                                     weights=config.evad.loss_weights.to_dict())
  else:
    step = steps_lib.finetune_step(graphdef, tx, schedule, num_classes=num_classes,
                                   label_smoothing=config.label_smoothing,
                                   mixup_config=config.mixup,
                                   compressor=classifier_compressor(config, abstract_model.grid))
  step_fn = steps_lib.compile_step(step, shardings, mesh)

  batches = make_train_dataset(config, source, local_batch, start, num_classes).as_numpy_iterator()
  try:
    state, last_record, preempted = _run_steps(config, workdir, step_fn, state, batches, mesh, ckpt,
                                               writer, latest, start, say)
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  plot = None
  if jax.process_index() == 0 and os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    keys = ("loss", "accuracy") if config.task == "finetune" else ("loss",)
    plot = metrics_lib.plot_curves(os.path.join(workdir, "metrics.jsonl"),
                                   os.path.join(workdir, "loss.png"), keys=keys,
                                   title=f"{config.task} ({os.path.basename(workdir.rstrip('/'))})")
  final_step = int(jax.device_get(state["step"]))
  return {"step": final_step, "preempted": preempted, "metrics": last_record,
          "checkpoints": checkpoint_dir(workdir), "plot": plot, "step_cache_size": step_fn._cache_size()}


def _pure(tree: Any) -> Any:
  """Orbax restores an `nnx.State` as nested dicts (string keys); keep them as plain dicts."""
  if isinstance(tree, nnx.State):
    return tree.to_pure_dict()
  return tree


def _run_steps(config, workdir, step_fn, state, batches, mesh, ckpt, writer, last_saved, start, say):
  """Steps `start..total_steps`; logs, checks finiteness, checkpoints; stops on preemption."""
  pending: list[tuple[int, dict]] = []
  last_record: dict[str, float] = {}
  tick, tick_step = time.perf_counter(), start
  preempted = False
  for i in range(start, config.total_steps):
    batch = sharding_lib.to_global(next(batches), mesh)
    state, step_metrics = step_fn(state, batch)
    pending.append((i + 1, step_metrics))
    done = i + 1 == config.total_steps
    preempted = ckpt.preemption_requested()
    save_now = done or preempted or (i + 1) % config.checkpoint_every_steps == 0
    log_now = done or (i + 1) % config.log_every_steps == 0
    if save_now or log_now:
      records = _fetch(pending)
      pending = []
      _check_finite(records, last_saved)
      if log_now:
        now = time.perf_counter()
        last_record = {k: float(np.mean([m[k] for _, m in records])) for k in records[-1][1]}
        last_record["lr"] = records[-1][1]["lr"]
        last_record["steps_per_sec"] = (i + 1 - tick_step) / max(now - tick, 1e-9)
        tick, tick_step = now, i + 1
        writer.write(i + 1, last_record)
      if save_now and ckpt.maybe_save(i + 1, state, state["params"], force=done or preempted):
        last_saved = i + 1
    if preempted:
      say(f"preemption signal: saved step {i + 1} to {checkpoint_dir(workdir)}; rerun with the "
          f"same --workdir to resume")
      break
  return state, last_record, preempted
