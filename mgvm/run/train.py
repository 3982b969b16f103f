"""The training runner behind `train.py`: data → sharded state → one compiled step → checkpoints, metrics.

What differs per `config.task` (model, step, data) comes from its module in `mgvm.tasks`.

Order (big_vision's): mesh → input pipeline → eval_shape → shardings → jitted init (or restore)
→ donate the state to a step compiled once. `config.mesh.fsdp` > 1 shards params and optimizer
state over an `fsdp` mesh axis; `config.accum_steps` > 1 splits each batch into micro-batches
(docs/scale.md).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from mgvm import sharding as sharding_lib
from mgvm import tasks
from mgvm import workdir as workdir_lib
from mgvm.tasks import common as task_common
from mgvm.train import state as state_lib
from mgvm.train import steps as steps_lib

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped early on purpose; rerun the same command


def outcome(result: dict[str, Any]) -> tuple[str, int]:
  """(the line `train.py` prints, its exit status) for `train`'s result; a preempted run is not
  done, so it exits with `PREEMPTED_EXIT_CODE` and says how to resume."""
  if result["preempted"]:
    return (
      f"preempted: saved step {result['step']} to {result['checkpoints']}; rerun the same command "
      f"to resume",
      PREEMPTED_EXIT_CODE,
    )
  return (
    f"done: step {result['step']}; checkpoints {result['checkpoints']}; loss curve {result['plot']}",
    0,
  )


class NonFiniteLossError(FloatingPointError):
  """The loss (or gradient norm) became NaN/inf; nothing non-finite was saved."""


def _fetch(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
  host = jax.device_get([m for _, m in pending])
  return [(step, {k: float(v) for k, v in m.items()}) for (step, _), m in zip(pending, host)]


def _check_finite(records, last_saved: int | None) -> None:
  for step, m in records:
    bad = {
      k: v
      for k, v in m.items()
      if k in ("loss", "grad_norm", "update_norm") and not math.isfinite(v)
    }
    if bad:
      where = f"step {last_saved}" if last_saved is not None else "none was written"
      raise NonFiniteLossError(
        f"non-finite {bad} at step {step}; stopping before anything non-finite is saved "
        f"(last checkpoint: {where}). Lower optim.base_lr, set optim.clip_grad_norm, or "
        f"check the input data."
      )


def train(config, workdir: str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Trains `config.task` (a module of `mgvm.tasks`) in `workdir`, resuming if it holds a checkpoint.

  One run per workdir: process 0 holds `DIR/train.lock` while it trains (a second run fails at
  once, naming the holder), and a resume must match the config recorded in `DIR/config.json`.
  """
  sharding_lib.maybe_initialize_distributed()
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() != 0:
    return _train(config, workdir, log)
  with workdir_lib.lock(workdir, log=print if log is None else log):
    return _train(config, workdir, log)


def _train(config, workdir: str, log: Callable[[str], None] | None) -> dict[str, Any]:
  from mgvm import metrics as metrics_lib
  from mgvm.data import pipeline, sources
  from mgvm.train import checkpoint as checkpoint_lib
  from mgvm.train import durations, optim
  from mgvm.weights import encoder_from_pretrained

  task = tasks.get(config.task)
  early: list[str] = []  # messages before the metric writer exists; they go to log.txt too

  def writer_log(message: str) -> None:
    (print if log is None else log)(message)
    early.append(message)

  mesh = sharding_lib.make_mesh(config.mesh.data, fsdp=config.mesh.get("fsdp", 1))
  accum_steps = int(config.get("accum_steps", 1))
  local_batch = sharding_lib.check_batch_size(config.batch_size, mesh, accum_steps)
  source = sources.resolve(config.data, log=writer_log, motion=task_common.needs_motion(config))
  durations.check_pairs(config)
  if durations.uses_epochs(config):
    # an epoch: every training video (detection: every annotated keyframe, AVA's epoch)
    what = getattr(task, "EPOCH_OF", "videos")
    count = source.count(config.data.train_split, what)
    given, config = config, durations.resolve(config, count)
    writer_log(durations.describe(given, config, count, what))
  lr_batch = optim.lr_batch_size(config)
  num_classes = task.num_classes(config, source)

  model_fn = lambda: task.build_model(config, num_classes=num_classes)  # noqa: E731
  abstract_model = nnx.eval_shape(model_fn)
  abstract_params = nnx.state(abstract_model, nnx.Param)
  depth = state_lib.num_layers(abstract_model)
  tx, schedule = optim.make_optimizer(
    config.optim,
    abstract_params,
    global_batch_size=lr_batch,
    total_steps=config.total_steps,
    num_layers=depth,
  )

  checkpoints = workdir_lib.checkpoint_dir(workdir)
  ckpt = checkpoint_lib.Checkpointer(
    checkpoints, max_to_keep=config.keep_checkpoints, save_every_steps=config.checkpoint_every_steps
  )
  latest = ckpt.latest_step()
  if jax.process_index() == 0:
    workdir_lib.record_config(workdir, config, resuming=latest is not None, log=writer_log)
  init_params = None
  if latest is None and config.get("init_from"):
    pretrained = task_common.init_from_params(config, config.init_from, abstract_model)
    init_params = encoder_from_pretrained(abstract_params, _pure(pretrained), log=writer_log)
  graphdef, abstract_state, shardings, init = state_lib.plan(
    model_fn, tx, mesh, config.seed, init_params=init_params
  )
  if latest is None:
    if config.get("restore_step"):
      raise FileNotFoundError(
        f"config.restore_step={config.restore_step} but {checkpoints} holds no checkpoint"
      )
    state = init()
  else:
    state, latest = _restore(config, ckpt, abstract_state, workdir, writer_log)
  start = int(jax.device_get(state["step"]))

  writer = metrics_lib.MetricWriter(
    workdir, total_steps=config.total_steps, tensorboard=config.tensorboard, resume_step=start
  )
  for message in early:
    writer.log(message, echo=False)
  say = writer.log if log is None else log
  say(
    f"{config.task}: {jax.device_count()} devices, mesh {dict(mesh.shape)}, global batch "
    f"{config.batch_size} ({local_batch} per host); {optim.describe_lr(config.optim, lr_batch)}"
  )
  if accum_steps > 1:
    say(
      f"gradient accumulation: batch {config.batch_size} = {accum_steps} micro-batches of "
      f"{config.batch_size // accum_steps}; the LR scales with the whole batch"
    )
  say(f"resumed from step {start}" if latest is not None else "starting from step 0")

  step = task.train_step(config, graphdef, abstract_model, tx, schedule, num_classes=num_classes)
  step_fn = steps_lib.compile_step(step, shardings, mesh)

  batches = pipeline.numpy_batches(
    task.train_dataset(
      config, source, local_batch=local_batch, start_step=start, num_classes=num_classes
    )
  )
  try:
    state, last_record, preempted = _run_steps(
      config, checkpoints, step_fn, state, batches, mesh, ckpt, writer, latest, start, say
    )
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  plot = None
  metrics_file = workdir_lib.metrics_path(workdir)
  if jax.process_index() == 0 and os.path.exists(metrics_file):
    plot = metrics_lib.plot_curves(
      metrics_file,
      workdir_lib.loss_plot_path(workdir),
      keys=task.PLOT_KEYS,
      title=f"{config.task} ({os.path.basename(workdir.rstrip('/'))})",
    )
  final_step = int(jax.device_get(state["step"]))
  return {
    "step": final_step,
    "preempted": preempted,
    "metrics": last_record,
    "checkpoints": checkpoints,
    "plot": plot,
    "step_cache_size": step_fn._cache_size(),
  }


def _restore(config, ckpt, abstract_state, workdir: str, log: Callable[[str], None]):
  """(state, step) to resume from: `config.restore_step` exactly (0: the newest intact step,
  passing over damaged newer ones with a warning). Newer steps are set aside, never deleted."""
  if config.get("restore_step"):
    step = int(config.restore_step)
    state = ckpt.restore(abstract_state, step)
  else:
    state, step = ckpt.restore_newest_intact(abstract_state, log=log)
  aside = ckpt.set_aside(after=step, log=log)
  metrics_file = workdir_lib.metrics_path(workdir)
  if jax.process_index() == 0 and aside and os.path.exists(metrics_file):
    # the metric writer drops the records past `step`; keep the old ones with the set-aside steps
    shutil.copy2(metrics_file, os.path.join(aside, f"metrics.before_step_{step}.jsonl"))
  return state, step


def _pure(tree: Any) -> Any:
  """Orbax restores an `nnx.State` as nested dicts (string keys); keep them as plain dicts."""
  if isinstance(tree, nnx.State):
    return tree.to_pure_dict()
  return tree


def _run_steps(
  config, checkpoints, step_fn, state, batches, mesh, ckpt, writer, last_saved, start, say
):
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
      say(
        f"preemption signal: saved step {i + 1} to {checkpoints}; rerun with the "
        f"same --workdir to resume"
      )
      break
  return state, last_record, preempted
