"""Gradient accumulation: k micro-batches give the update of one batch; indivisible batches fail."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from configs import detect, finetune, pretrain
from mgvm import sharding, tasks
from mgvm.train import optim, steps
from mgvm.train import state as state_lib
from tests.helpers import tiny

CONFIGS = {"pretrain": pretrain, "finetune": finetune}


def _config(task, accum_steps):
  config = tiny(CONFIGS[task].get_config("runlocal"), num_frames=4, accum_steps=accum_steps)
  config.model.update(depth=1, drop_path_rate=0.0, dtype="float32")
  # the peak LR at step 0 (a warmup starts from 0: no update). Adam's first update is
  # lr * g / (|g| + eps): with eps 1e-8 it turns float32 rounding of gradients near 1e-8 into
  # differences of a percent of lr; eps 1e-6 keeps the comparison about the gradients
  config.optim.update(warmup_steps=0, eps=1e-6)
  if task == "pretrain":
    config.masking.update(kind="tube", ratio=0.5)  # random masks: drawn once for the batch
  else:  # drawn once for the batch too: flips, label smoothing, mixup / cutmix
    config.label_smoothing = 0.1
    config.mixup.update(enabled=True, prob=1.0)
  return config


def _batch(task):
  rng = np.random.default_rng(0)
  batch = {
    "video": rng.integers(0, 256, (8, 4, 32, 32, 3), dtype=np.uint8),
    "flip": rng.random(8) < 0.5,
  }
  if task == "finetune":
    batch["label"] = np.arange(8, dtype=np.int32) % 3
  return batch


@functools.cache
def _one_update(task, accum_steps):
  """The metrics and params after one step on `_batch(task)` (and the params before it)."""
  config = _config(task, accum_steps)
  task_lib = tasks.get(task)
  num_classes = 3 if task == "finetune" else None
  model_fn = lambda: task_lib.build_model(config, num_classes=num_classes)  # noqa: E731
  abstract = nnx.eval_shape(model_fn)
  tx, schedule = optim.make_optimizer(
    config.optim,
    nnx.state(abstract, nnx.Param),
    global_batch_size=8,
    total_steps=10,
    num_layers=1,
  )
  mesh = sharding.make_mesh(1)
  graphdef, state, shardings = state_lib.create(model_fn, tx, mesh, seed=0)
  step = task_lib.train_step(config, graphdef, abstract, tx, schedule, num_classes=num_classes)
  traces = []

  def counted(state, batch):
    traces.append(1)
    return step(state, batch)

  step_fn = steps.compile_step(counted, shardings, mesh)
  initial = jax.device_get(state["params"].to_pure_dict())
  state, metrics = step_fn(state, sharding.to_global(_batch(task), mesh))
  assert len(traces) == 1
  out = {k: float(v) for k, v in jax.device_get(metrics).items()}
  out.update(params=jax.device_get(state["params"].to_pure_dict()), initial=initial)
  return out


@pytest.mark.parametrize("task", [pytest.param("pretrain", marks=pytest.mark.slow), "finetune"])
@pytest.mark.parametrize("accum_steps", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_k_micro_batches_give_the_update_of_one_batch(task, accum_steps):
  one, split = _one_update(task, 1), _one_update(task, accum_steps)
  np.testing.assert_allclose(split["loss"], one["loss"], rtol=1e-5)
  np.testing.assert_allclose(split["grad_norm"], one["grad_norm"], rtol=1e-4)
  assert split.get("accuracy") == one.get("accuracy")
  jax.tree.map(  # each element moved by about lr (1.6e-3 pre-training, 5e-4 fine-tuning)
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    split["params"],
    one["params"],
  )
  fc1 = lambda p: p["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"]  # noqa: E731
  assert np.abs(fc1(one["params"]) - fc1(one["initial"])).max() > 1e-4  # it moved


def test_micro_batches_take_every_kth_row_so_devices_keep_their_rows():
  x = np.arange(8)
  np.testing.assert_array_equal(steps.micro_batches(x, 2), [[0, 2, 4, 6], [1, 3, 5, 7]])
  np.testing.assert_array_equal(steps.micro_batches(x, 4)[1], [1, 5])
  with pytest.raises(ValueError, match="a batch of 6 clips does not split into accum_steps=4"):
    steps.micro_batches(np.zeros((6, 2)), 4)


def test_a_batch_that_does_not_split_into_micro_batches_over_the_devices_fails_naming_the_numbers():
  mesh = sharding.make_mesh(-1)
  with pytest.raises(
    ValueError,
    match=r"batch_size=24 is not divisible by accum_steps=2 x 8 devices of the mesh \(data 8\) = 16",
  ):
    sharding.check_batch_size(24, mesh, accum_steps=2)
  assert sharding.check_batch_size(32, mesh, accum_steps=4) == 32
  with pytest.raises(ValueError, match=r"accum_steps=0 must be >= 1"):
    sharding.check_batch_size(32, mesh, accum_steps=0)
  config = tiny(detect.get_config("runlocal"), accum_steps=2)
  with pytest.raises(ValueError, match="accum_steps=2: gradient accumulation is not available"):
    tasks.get("detect").train_step(config, None, None, None, None, num_classes=2)


@pytest.mark.slow  # two training runs
def test_the_runner_trains_with_fsdp_and_micro_batches_and_resumes_on_another_mesh(
  tmp_path, synthetic_dir
):
  from mgvm.run import train as train_run

  workdir = str(tmp_path / "run")
  config = tiny(pretrain.get_config("runlocal"), synthetic_dir, total_steps=3, accum_steps=2)
  config.mesh.update(data=2, fsdp=2)
  messages = []
  result = train_run.train(config, workdir, log=messages.append)
  assert result["step"] == 3 and result["step_cache_size"] == 1
  assert any("mesh {'data': 2, 'fsdp': 2}" in m for m in messages)
  assert (
    "gradient accumulation: batch 8 = 2 micro-batches of 4; the LR scales with the whole "
    "batch" in messages
  )
  assert np.isfinite(result["metrics"]["loss"])
  # the fsdp-sharded checkpoint restores onto a data-parallel mesh of 4 devices
  config.update(total_steps=4)
  config.mesh.update(data=4, fsdp=1)
  messages = []
  result = train_run.train(config, workdir, log=messages.append)
  assert "resumed from step 3" in messages and result["step"] == 4
  assert np.isfinite(result["metrics"]["loss"])
