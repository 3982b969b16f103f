"""Two processes on localhost, launched as a user launches them: training and evaluation equal one
process with the same devices, and a two-process checkpoint resumes in one process."""

import json
import os
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import finetune  # noqa: E402
from mgvm import metrics as metrics_lib  # noqa: E402
from mgvm.run import evaluate as eval_run  # noqa: E402
from mgvm.run import train as train_run  # noqa: E402
from mgvm.train import checkpoint as checkpoint_lib  # noqa: E402
from mgvm.workdir import checkpoint_dir  # noqa: E402
from tests.helpers import run_on_two_hosts, tiny  # noqa: E402


def _losses(workdir):
  records = metrics_lib.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["loss"] for r in records}


def _params(workdir, step=None):
  return jax.device_get(checkpoint_lib.load_params(checkpoint_dir(workdir), step=step))


def _assert_params_close(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_two_processes_train_and_evaluate_as_one_and_resume_in_one(tmp_path, synthetic_dir):
  config = tiny(
    finetune.get_config("runlocal"),
    synthetic_dir,
    total_steps=6,
    log_every_steps=1,
    checkpoint_every_steps=3,
  )
  config.data.host_independent_batches = True  # global batches independent of the host count
  config.data.synthetic.videos_per_shard = 3  # two test shards (3 + 2 videos): one per host
  config.eval.update(split="test", num_clips=2)
  config.mesh.data = 2  # one process with two devices: the layout of two one-device hosts
  one_dir, two_dir = str(tmp_path / "one"), str(tmp_path / "two")
  # first, so that the two processes make the data set: process 0 writes it, then the other
  # finds it (sources._process_zero_first)
  outputs = run_on_two_hosts(config, two_dir, train=True, tag="hosts2")
  assert "generating" in outputs[0] and "generating" not in outputs[1]
  train_run.train(config, one_dir, log=lambda _: None)
  one_eval = eval_run.evaluate(config, one_dir, log=lambda _: None)

  one, two = _losses(one_dir), _losses(two_dir)
  assert sorted(two) == list(range(1, 7))
  np.testing.assert_allclose(
    [two[s] for s in sorted(two)], [one[s] for s in sorted(one)], rtol=1e-5
  )
  _assert_params_close(_params(two_dir), _params(one_dir))
  # evaluation: each host predicts its own test shard, then the per-video results are gathered
  two_eval = json.load(open(os.path.join(two_dir, "eval", "test.hosts2.json")))
  for key in ("num_videos", "num_views", "views_per_video", "top1", "top5"):
    assert two_eval[key] == one_eval[key], key
  assert "x chance" in outputs[0] and "x chance" not in outputs[1]  # host 0 reports

  # the two-process checkpoint of step 3 resumes in one process and ends where one process did
  config.restore_step = 3
  result = train_run.train(config, two_dir, log=lambda _: None)
  assert result["step"] == 6
  resumed = _losses(two_dir)
  np.testing.assert_allclose(
    [resumed[s] for s in (4, 5, 6)], [one[s] for s in (4, 5, 6)], rtol=1e-5
  )
  _assert_params_close(_params(two_dir), _params(one_dir))
