"""End to end on CPU: pre-train → fine-tune (init_from) → evaluate; resume; non-finite loss."""

import json
import os
import signal
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import finetune, pretrain  # noqa: E402
from mgvm import metrics as metrics_lib  # noqa: E402
from mgvm.run import evaluate as eval_run  # noqa: E402
from mgvm.run import train as train_run  # noqa: E402
from mgvm.tasks import finetune as finetune_task  # noqa: E402
from mgvm.train import checkpoint as checkpoint_lib  # noqa: E402
from mgvm.workdir import ConfigChangedError, checkpoint_dir  # noqa: E402
from tests.helpers import damage_step, tiny  # noqa: E402


def _records(workdir):
  return metrics_lib.read_metrics(os.path.join(workdir, "metrics.jsonl"))


@pytest.mark.slow
def test_pretrain_finetune_eval_chain(tmp_path, synthetic_dir):
  pre_dir, ft_dir = str(tmp_path / "pretrain"), str(tmp_path / "finetune")
  config = tiny(
    pretrain.get_config("runlocal"),
    synthetic_dir,
    total_steps=4,
    log_every_steps=2,
    checkpoint_every_steps=2,
    tensorboard=True,
  )
  result = train_run.train(config, pre_dir, log=lambda _: None)
  assert result["step"] == 4 and result["step_cache_size"] == 1
  records = _records(pre_dir)
  assert [r["step"] for r in records] == [2, 4]
  assert all(r["loss"] > 0 and r["lr"] > 0 and r["steps_per_sec"] > 0 for r in records)
  assert os.path.getsize(os.path.join(pre_dir, "loss.png")) > 0
  assert os.listdir(os.path.join(pre_dir, "tensorboard"))
  assert checkpoint_lib.Checkpointer(checkpoint_dir(pre_dir), save_every_steps=2).latest_step() == 4

  pre_eval = eval_run.evaluate(config, pre_dir, log=lambda _: None)
  saved = json.load(open(os.path.join(pre_dir, "eval", "val.json")))
  assert saved["num_clips"] == 6  # 6 val videos, padded batch of 8
  assert 0 < saved["loss"] < 5 and saved["psnr"] > 5 and pre_eval["loss"] == saved["loss"]
  config.restore_step = 2  # an earlier step, pinned; the result names it
  early = eval_run.evaluate(config, pre_dir, tag="", log=lambda _: None)
  assert early["path"] == os.path.join(pre_dir, "eval", "val.restore_step=2.json")
  assert early["params"].endswith("step 2") and early["loss"] != pre_eval["loss"]
  tagged = eval_run.evaluate(config, pre_dir, tag="early", log=lambda _: None)
  assert tagged["path"] == os.path.join(pre_dir, "eval", "val.early.json")
  assert os.path.exists(os.path.join(pre_dir, "eval", "val.json"))  # not overwritten

  messages = []
  config = tiny(
    finetune.get_config("runlocal"),
    synthetic_dir,
    total_steps=0,
    total_epochs=1,  # 24 training videos // 8 per step = 3 steps
    log_every_steps=1,
    checkpoint_every_steps=3,
    init_from=pre_dir,
  )
  config.mixup.enabled = True
  train_run.train(config, ft_dir, log=messages.append)
  assert any("init_from" in m and "decoder" in m for m in messages)
  assert any(m.startswith("durations: total 1 epochs -> 3 steps") for m in messages), messages
  assert [r["step"] for r in _records(ft_dir)] == [1, 2, 3]
  config.eval.update(split="test", num_clips=2, num_crops=3)
  result = eval_run.evaluate(config, ft_dir, log=messages.append)
  assert result["num_videos"] == 5 and result["num_views"] == 30 and result["views_per_video"] == 6
  assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
  assert "x chance" in messages[-1] and "checkpoints" in messages[-1]
  # views differ from the run's config: the result gets a name of its own
  assert result["path"] == os.path.join(ft_dir, "eval", "test.eval.num_crops=3.json")
  assert result["settings"] == {"eval.num_crops": 3}  # runlocal already has 2 clips
  with open(os.path.join(ft_dir, "log.txt")) as f:
    assert "init_from" in f.read()  # said before the metric writer existed, logged all the same


def _params(workdir):
  return jax.device_get(checkpoint_lib.load_params(checkpoint_dir(workdir)))


@pytest.mark.slow
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, synthetic_dir, monkeypatch):
  def config():
    return tiny(
      pretrain.get_config("runlocal"),
      synthetic_dir,
      total_steps=6,
      log_every_steps=1,
      checkpoint_every_steps=100,
    )

  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  train_run.train(config(), straight, log=lambda _: None)

  write = metrics_lib.MetricWriter.write

  def write_and_preempt(self, step, values):
    write(self, step, values)
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends before preempting

  monkeypatch.setattr(metrics_lib.MetricWriter, "write", write_and_preempt)
  first = train_run.train(config(), resumed, log=lambda _: None)
  monkeypatch.setattr(metrics_lib.MetricWriter, "write", write)
  assert first["preempted"] and first["step"] == 4  # saved at the next step, then stopped
  message, status = train_run.outcome(first)  # what train.py prints, and its exit status
  assert status == train_run.PREEMPTED_EXIT_CODE != 0
  assert message.startswith("preempted: saved step 4") and "rerun the same command" in message
  second = train_run.train(config(), resumed, log=lambda _: None)
  assert second["step"] == 6 and not second["preempted"]
  assert train_run.outcome(second)[1] == 0 and train_run.outcome(second)[0].startswith(
    "done: step 6"
  )
  assert [r["step"] for r in _records(resumed)] == [1, 2, 3, 4, 5, 6]
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))
  losses = [[r["loss"] for r in _records(d)] for d in (straight, resumed)]
  np.testing.assert_array_equal(losses[0], losses[1])


@pytest.mark.slow
def test_a_crash_resumes_from_the_last_periodic_checkpoint(tmp_path, synthetic_dir, monkeypatch):
  def config():
    return tiny(
      pretrain.get_config("runlocal"),
      synthetic_dir,
      total_steps=5,
      log_every_steps=1,
      checkpoint_every_steps=2,
    )

  straight, crashed = str(tmp_path / "straight"), str(tmp_path / "crashed")
  train_run.train(config(), straight, log=lambda _: None)
  write = metrics_lib.MetricWriter.write

  def write_and_crash(self, step, values):
    write(self, step, values)
    if step == 3:
      raise KeyboardInterrupt("simulated crash")

  monkeypatch.setattr(metrics_lib.MetricWriter, "write", write_and_crash)
  with pytest.raises(KeyboardInterrupt):
    train_run.train(config(), crashed, log=lambda _: None)
  monkeypatch.setattr(metrics_lib.MetricWriter, "write", write)
  assert not os.path.exists(os.path.join(crashed, "train.lock"))  # released by the crash
  changed = config()
  changed.optim.base_lr *= 2  # would silently change the run: refused before any step
  with pytest.raises(ConfigChangedError, match="optim.base_lr"):
    train_run.train(changed, crashed, log=lambda _: None)
  messages = []
  assert train_run.train(config(), crashed, log=messages.append)["step"] == 5
  assert "resumed from step 2" in messages
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(crashed))

  # Damage the latest step: eval fails naming it (never a NaN result); training resumes from the
  # newest intact step, sets the damaged one aside and ends where an undamaged run ends.
  damage_step(checkpoint_dir(crashed), 5, "state", "flipped")
  with pytest.raises(checkpoint_lib.CorruptCheckpointError, match="step 5 in"):
    eval_run.evaluate(config(), crashed, log=lambda _: None)
  messages = []
  assert train_run.train(config(), crashed, log=messages.append)["step"] == 5
  assert "resumed from step 4" in messages
  assert any("resuming from step 4, the newest intact one" in m for m in messages)
  aside = checkpoint_dir(crashed) + ".set_aside"
  assert sorted(os.listdir(aside)) == ["5", "metrics.before_step_4.jsonl"]
  with open(os.path.join(crashed, "log.txt")) as f:
    assert "the newest intact one" in f.read()  # the warning is in the run's log too
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(crashed))


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path, synthetic_dir):
  config = tiny(
    pretrain.get_config("runlocal"),
    synthetic_dir,
    total_steps=4,
    log_every_steps=4,
    checkpoint_every_steps=1,
  )
  config.optim.update(base_lr=1e38, warmup_steps=0)  # the first update overflows
  with pytest.raises(train_run.NonFiniteLossError, match="step 1"):
    train_run.train(config, str(tmp_path), log=lambda _: None)
  assert (
    checkpoint_lib.Checkpointer(checkpoint_dir(str(tmp_path)), save_every_steps=1).latest_step()
    is None
  )


@pytest.mark.slow
def test_motion_guided_compression_in_pretraining_finetuning_and_eval(tmp_path, synthetic_dir):
  """`compress=mgtc`: pre-training masks among the kept tokens; the classifier trains and is
  evaluated on the kept tokens only (grid (4, 2, 2): 12 of 16 tokens)."""
  pre_dir, ft_dir = str(tmp_path / "pretrain"), str(tmp_path / "finetune")
  config = tiny(
    pretrain.get_config("runlocal,masker=tube,compress=mgtc"),
    synthetic_dir,
    total_steps=3,
    log_every_steps=1,
    checkpoint_every_steps=3,
  )
  assert train_run.train(config, pre_dir, log=lambda _: None)["step"] == 3
  assert np.isfinite(_records(pre_dir)[-1]["loss"])
  config = tiny(
    finetune.get_config("runlocal,compress=mgtc"),
    synthetic_dir,
    total_steps=3,
    log_every_steps=1,
    checkpoint_every_steps=3,
    init_from=pre_dir,
  )
  train_run.train(config, ft_dir, log=lambda _: None)
  result = eval_run.evaluate(config, ft_dir, log=lambda _: None)
  assert result["compression"]["tokens"] == "12 of 16" and result["compression"]["kind"] == "mgtc"
  from benchmarks import compression_at_inference as study  # the study script on this run

  rows = study.measure(config, ft_dir, [0.0, 0.5], split="val")
  assert [r["tokens"] for r in rows] == [16, 8]
  assert rows[1]["gflops_per_clip"] < 0.9 * rows[0]["gflops_per_clip"]  # embedding is not cut
  config.masking = {"kind": "tube", "ratio": 0.5}
  with pytest.raises(ValueError, match="fine-tuning takes a compressor"):
    finetune_task.compressor(config, (4, 2, 2))


@pytest.mark.slow  # compiles a pre-training step; the full suite runs it
def test_codec_motion_maskers_run_on_the_synthetic_set(tmp_path, synthetic_dir):
  """A masker that reads the codec motion field (MGMAE, `flow=codec`) pre-trains and evaluates on
  the built-in set: it is written once more with the field, beside the plain set, and its clips
  show the same frames as the plain set's (so every other arm of a study compares with it)."""
  from mgvm.data import sources
  from mgvm.tasks import pretrain as pretrain_task
  from mgvm.tasks.common import needs_motion

  config = tiny(
    pretrain.get_config("runlocal,masker=mgmae"),
    synthetic_dir,
    total_steps=3,
    log_every_steps=1,
    checkpoint_every_steps=3,
  )
  config.masking.flow = "codec"
  plain_config = tiny(pretrain.get_config("runlocal,masker=tube"), synthetic_dir)
  assert needs_motion(config) and not needs_motion(plain_config)
  workdir = str(tmp_path / "mgmae_codec")
  assert train_run.train(config, workdir, log=lambda _: None)["step"] == 3
  assert np.isfinite(_records(workdir)[-1]["loss"])
  asked = []  # eval.py asks for the field too (stopped there: its steps are tested elsewhere)

  class Asked(Exception):
    pass

  def resolve(data_config, log, *, motion=False):
    asked.append(motion)
    raise Asked

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sources, "resolve", resolve)
    with pytest.raises(Asked):
      eval_run.evaluate(config, workdir, log=lambda _: None)
  assert asked == [True]

  moving = sources.resolve(config.data, log=lambda _: None, motion=True)
  plain = sources.resolve(plain_config.data, log=lambda _: None)
  assert moving.root != plain.root and os.path.dirname(moving.root) == str(synthetic_dir)
  first = lambda c, s: next(  # noqa: E731
    iter(pretrain_task.train_dataset(c, s, local_batch=8, start_step=0))
  )
  with_motion, without = first(config, moving), first(plain_config, plain)
  np.testing.assert_array_equal(with_motion["video"], without["video"])
  assert with_motion["motion"].shape == (8, 8, 2, 2, 2) and "motion" not in without
