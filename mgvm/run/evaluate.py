"""The evaluation runner behind `eval.py`: restore a workdir's latest params, evaluate a split,
write `DIR/eval/<split>[.<what differs>].json`. What is measured comes from `config.task`'s module in `mgvm.tasks`."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
from flax import nnx

from mgvm import sharding as sharding_lib
from mgvm import tasks
from mgvm import workdir as workdir_lib
from mgvm.tasks.common import EvalContext, needs_motion


def restore_params(
  config,
  workdir: str,
  abstract_params,
  checkpoint: str | None = None,
  num_classes: int | None = None,
  model=None,
):
  """(params, where they came from): a torch/HF `checkpoint` if given, else `workdir`'s
  `config.restore_step` (0: the latest). Either must fit `abstract_params` (the model the config
  describes; `model` is that abstract model), else `CheckpointMismatchError` lists each
  differing parameter."""
  if not checkpoint:
    return workdir_lib.latest_params(workdir, abstract_params, step=config.get("restore_step"))
  params = tasks.get(config.task).import_torch(
    config, checkpoint, num_classes=num_classes, model=model
  )
  check_params_fit(abstract_params, params, f"torch checkpoint {checkpoint}")
  return params, f"torch checkpoint {checkpoint}"


def check_params_fit(abstract_params, params, what: str) -> None:
  """Raises `CheckpointMismatchError` naming each parameter whose shape differs between the
  model the config describes and `params` (read from `what`), or that only one of them has."""
  from mgvm.train.optim import path_names
  from mgvm.weights.params import mismatch_error, shape_differences

  def shapes(tree):
    return {
      "/".join(path_names(p)): tuple(x.shape)
      for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }

  lines = shape_differences(shapes(abstract_params), shapes(params), what="file")
  if lines:
    raise mismatch_error(
      f"the {what} does not fit the model the config describes; set config.model (size, or "
      f"dim / depth / num_heads) to the file's size",
      lines,
    )


def evaluate(
  config,
  workdir: str,
  *,
  split: str | None = None,
  checkpoint: str | None = None,
  tag: str = "",
  log: Callable[[str], None] = print,
) -> dict[str, Any]:
  """Evaluates `config.task`'s model on `split` (default `config.eval.split`); returns the result,
  also written to `DIR/eval/<name>.json` (`workdir.eval_name`: the split, then `tag` or what the
  evaluation changed from the run's recorded config)."""
  from mgvm.data import sources

  sharding_lib.maybe_initialize_distributed()
  task = tasks.get(config.task)
  if not checkpoint:
    workdir_lib.require_checkpoints(workdir)  # before any data is read or generated
  split = split or config.eval.split
  settings = workdir_lib.eval_settings(workdir, config)
  name = workdir_lib.eval_name(split, settings, checkpoint=checkpoint or "", tag=tag)
  mesh = sharding_lib.make_mesh(
    config.mesh.data, fsdp=config.mesh.get("fsdp", 1)
  )  # params replicated
  local_batch = sharding_lib.check_batch_size(config.eval.batch_size, mesh)
  source = sources.resolve(config.data, log=log, motion=needs_motion(config))
  num_classes = task.num_classes(config, source)
  abstract_model = nnx.eval_shape(lambda: task.build_model(config, num_classes=num_classes))
  graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
  replicated = sharding_lib.replicated(mesh)
  abstract_params = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_params
  )
  params, origin = restore_params(
    config, workdir, abstract_params, checkpoint, num_classes, model=abstract_model
  )
  params = jax.device_put(params, replicated)
  ctx = EvalContext(
    source=source,
    split=split,
    graphdef=graphdef,
    params=params,
    mesh=mesh,
    local_batch=local_batch,
    num_classes=num_classes,
    model=abstract_model,
  )
  result = task.evaluate(config, ctx)
  result.update(split=split, params=origin, data=source.root, settings=settings, tag=tag)
  if jax.process_index() == 0:  # every host holds the same result
    result["path"] = workdir_lib.write_eval_result(workdir, result, name)
    log(summary(task, workdir, result))
  return result


def summary(task, workdir: str, result: dict[str, Any]) -> str:
  """A few lines a newcomer can read: the score against chance and where everything is."""
  lines = [
    task.summary(result),
    f"result: {result['path']}; checkpoints: {workdir_lib.checkpoint_dir(workdir)}",
  ]
  plot = workdir_lib.loss_plot_path(workdir)
  if os.path.exists(plot):
    lines.append(f"loss curve: {plot}; metrics: {workdir_lib.metrics_path(workdir)}")
  return "\n".join(lines)
