"""train.py / eval.py as a user runs them; config mistakes fail at once, naming the key."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, *args, env=None):
  return subprocess.run(
    [sys.executable, str(ROOT / script), *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


@pytest.mark.slow
def test_train_then_eval_on_the_command_line(tmp_path, synthetic_dir):
  config = [
    "--config",
    "configs/finetune.py:runlocal",
    "--workdir",
    str(tmp_path / "run"),
    *config_flags(synthetic_dir),
    "--config.data.target_fps=(4.0,8.0)",
  ]
  # The full fine-tuning recipe's augmentations and a list of rates (FPS augmentation; eval
  # takes the first) go through the command line; eval.py leaves out the training-only ones,
  # which do not change the name of its result.
  proc = _run(
    "train.py",
    *config,
    "--config.total_steps=2",
    "--config.optim.warmup_steps=1",
    "--config.log_every_steps=1",
    "--config.data.rand_augment=rand-m7-n4-mstd0.5-inc1",
    "--config.data.random_erase=0.25",
    "--config.data.num_sample=2",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "step 2/2" in proc.stdout and "loss" in proc.stdout
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2]
  assert {"loss", "lr", "steps_per_sec", "accuracy"} <= set(records[0])
  proc = _run("eval.py", *config, "--split=val")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "run" / "eval" / "val.json").read_text())
  assert result["num_videos"] == 6 and "x chance" in proc.stdout  # every val video once


@pytest.mark.slow
def test_eval_of_a_workdir_without_checkpoints_says_so(tmp_path, synthetic_dir):
  proc = _run(
    "eval.py",
    "--config",
    "configs/pretrain.py:runlocal",
    "--workdir",
    str(tmp_path / "empty"),
    *config_flags(synthetic_dir),
  )
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert f"error: No checkpoint found in {tmp_path / 'empty'}" in proc.stderr
  assert proc.stderr.strip().count("\n") == 0, proc.stderr  # the error line and nothing else
  assert not (tmp_path / "empty").exists()  # a mistyped workdir gets no folders


@pytest.mark.slow
def test_misspelt_config_keys_fail_naming_the_key(tmp_path):
  proc = _run(
    "train.py",
    "--config",
    "configs/pretrain.py:runlocal",
    "--workdir",
    str(tmp_path),
    "--config.total_stpes=3",
  )
  # one line, no traceback: `error: ...` and exit status 2
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "error: the config has no key 'total_stpes' (did you mean 'total_steps'?)" in proc.stderr
  proc = _run("train.py", "--config", "configs/pretrain.py:runlokal", "--workdir", str(tmp_path))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "unknown config argument 'runlokal'" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()
  env = dict(os.environ, MGVM_TRACEBACK="1")  # the traceback on request
  proc = _run(
    "train.py", "--config", "configs/pretrain.py:runlokal", "--workdir", str(tmp_path), env=env
  )
  assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize("masker", ["random", "running_cell"])
def test_config_selects_the_masker(masker):
  sys.path.insert(0, str(ROOT))
  from configs import pretrain
  from mgvm import masking

  config = pretrain.get_config(f"runlocal,masker={masker}")
  built = masking.build(config.masking, (4, 4, 4))
  assert built.kind == masker


def test_dataset_presets_set_sampling_flip_and_views():
  sys.path.insert(0, str(ROOT))
  from configs import finetune, pretrain

  ssv2 = finetune.get_config("dataset=ssv2")
  assert (ssv2.data.temporal, ssv2.data.flip, ssv2.eval.num_clips, ssv2.eval.num_crops) == (
    "segment",
    False,
    2,
    3,
  )
  k400 = finetune.get_config("dataset=k400")
  assert (
    k400.data.temporal,
    k400.data.target_fps,
    k400.data.frame_stride,
    k400.data.flip,
    k400.eval.num_clips,
    k400.eval.num_crops,
  ) == ("dense", 0, 4, True, 5, 3)
  assert k400.data.rand_augment == "rand-m7-n4-mstd0.5-inc1" and k400.data.random_erase == 0.25
  assert pretrain.get_config("dataset=ssv2").data.frame_stride == 2
  assert not pretrain.get_config("dataset=k400").data.flip
  with pytest.raises(ValueError, match="unknown dataset 'kinetics'"):
    finetune.get_config("dataset=kinetics")


@pytest.mark.parametrize("name", ["pretrain", "finetune"])
def test_fps_scale_keeps_the_encoder_token_count(name):
  sys.path.insert(0, str(ROOT))
  from configs import finetune, pretrain
  from mgvm import masking

  get = {"pretrain": pretrain, "finetune": finetune}[name].get_config

  def encoder_tokens(config):
    t, p = config.model.tubelet[0], config.model.tubelet[1]
    grid = (config.num_frames // t, config.image_size // p, config.image_size // p)
    if not config.masking.get("kind"):
      return grid[0] * grid[1] * grid[2]
    return masking.build(config.masking, grid).num_keep

  for base in ("runlocal", ""):  # CPU size (8 -> 16 frames) and the reference size (16 -> 32)
    plain, scaled = get(base), get(",".join(filter(None, [base, "fps_scale=2"])))
    assert scaled.num_frames == 2 * plain.num_frames
    if plain.data.target_fps:
      assert scaled.data.target_fps == 2 * plain.data.target_fps
    assert encoder_tokens(scaled) == encoder_tokens(plain)
  with pytest.raises(ValueError, match="fps_scale sets its own"):
    get("fps_scale=2,compress=mgtc")


@pytest.mark.parametrize("name", ["pretrain", "finetune"])
def test_every_config_docstring_starts_with_the_command_that_runs_it(name):
  text = (ROOT / "configs" / f"{name}.py").read_text()
  first = text.split('"""', 2)[1].splitlines()[0]
  assert first.startswith(f"python train.py --config configs/{name}.py")
