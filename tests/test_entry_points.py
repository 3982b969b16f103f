"""train.py / eval.py run end to end on CPU; config mistakes fail at once, naming the key."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, *args):
  return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_train_writes_metrics_and_eval_writes_loss(tmp_path):
  common = ["--config", "configs/pretrain.py:runlocal", "--workdir", str(tmp_path),
            "--config.total_steps=4", "--config.log_every_steps=2", "--config.warmup_steps=1"]
  proc = _run("train.py", *common)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4]
  assert all(r["loss"] > 0 and r["lr"] > 0 for r in records)
  proc = _run("eval.py", *common[:4], "--num_batches=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "eval.json").read_text())
  assert result["num_batches"] == 1 and 0.1 < result["loss"] < 10


def test_misspelt_config_keys_fail_naming_the_key(tmp_path):
  proc = _run("train.py", "--config", "configs/pretrain.py:runlocal", "--workdir", str(tmp_path),
              "--config.total_stpes=3")
  assert proc.returncode != 0 and "total_stpes" in proc.stderr
  proc = _run("train.py", "--config", "configs/pretrain.py:runlokal", "--workdir", str(tmp_path))
  assert proc.returncode != 0 and "unknown config argument 'runlokal'" in proc.stderr
  proc = _run("train.py", "--config", "configs/pretrain.py:runlocal", "--workdir", str(tmp_path),
              "--config.masking.ratoi=0.5")
  assert proc.returncode != 0 and "ratoi" in proc.stderr


@pytest.mark.parametrize("masker", ["random", "running_cell"])
def test_config_selects_the_masker(masker):
  sys.path.insert(0, str(ROOT))
  from configs import pretrain
  from mgvm import masking
  config = pretrain.get_config(f"runlocal,masker={masker}")
  built = masking.build(config.masking, (4, 4, 4))
  assert built.kind == masker
