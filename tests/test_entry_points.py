"""train.py / eval.py as a user runs them; config mistakes fail at once, naming the key."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.model.dim=32", "--config.model.depth=1", "--config.model.num_heads=2",
        "--config.num_frames=4", "--config.image_size=32", "--config.batch_size=8",
        "--config.data.synthetic.image_size=32", "--config.data.synthetic.num_train=16",
        "--config.data.synthetic.num_val=4", "--config.data.synthetic.num_test=4",
        "--config.data.synthetic.min_seconds=1.0", "--config.data.synthetic.max_seconds=1.5",
        "--config.eval.batch_size=8"]


def _run(script, *args, env=None):
  return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_train_then_eval_on_the_command_line(tmp_path):
  env = dict(os.environ, MGVM_DATA_DIR=str(tmp_path / "data"))
  config = ["--config", "configs/finetune.py:runlocal", "--workdir", str(tmp_path / "run"), *TINY]
  proc = _run("train.py", *config, "--config.total_steps=2", "--config.optim.warmup_steps=1",
              "--config.log_every_steps=1",
              env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "step 2/2" in proc.stdout and "loss" in proc.stdout
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2]
  assert {"loss", "lr", "steps_per_sec", "accuracy"} <= set(records[0])
  proc = _run("eval.py", *config, "--split=val", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "run" / "eval" / "val.json").read_text())
  assert result["num_videos"] == 4 and "x chance" in proc.stdout


def test_eval_of_a_workdir_without_checkpoints_says_so(tmp_path):
  env = dict(os.environ, MGVM_DATA_DIR=str(tmp_path / "data"))
  proc = _run("eval.py", "--config", "configs/pretrain.py:runlocal", "--workdir",
              str(tmp_path / "empty"), *TINY, env=env)
  assert proc.returncode != 0 and "empty" in proc.stderr and "checkpoint" in proc.stderr.lower()


def test_misspelt_config_keys_fail_naming_the_key(tmp_path):
  proc = _run("train.py", "--config", "configs/pretrain.py:runlocal", "--workdir", str(tmp_path),
              "--config.total_stpes=3")
  assert proc.returncode != 0 and "total_stpes" in proc.stderr
  proc = _run("train.py", "--config", "configs/pretrain.py:runlokal", "--workdir", str(tmp_path))
  assert proc.returncode != 0 and "unknown config argument 'runlokal'" in proc.stderr
  proc = _run("train.py", "--config", "configs/finetune.py:runlocal", "--workdir", str(tmp_path),
              "--config.optim.layer_dceay=0.5")
  assert proc.returncode != 0 and "layer_dceay" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("masker", ["random", "running_cell"])
def test_config_selects_the_masker(masker):
  sys.path.insert(0, str(ROOT))
  from configs import pretrain
  from mgvm import masking
  config = pretrain.get_config(f"runlocal,masker={masker}")
  built = masking.build(config.masking, (4, 4, 4))
  assert built.kind == masker


@pytest.mark.parametrize("name", ["pretrain", "finetune"])
def test_every_config_docstring_starts_with_the_command_that_runs_it(name):
  text = (ROOT / "configs" / f"{name}.py").read_text()
  first = text.split('"""', 2)[1].splitlines()[0]
  assert first.startswith(f"python train.py --config configs/{name}.py")
