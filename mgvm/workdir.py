"""What a run's workdir holds and where: checkpoints, metrics, the loss curve, evaluation results.

`train.py` writes `DIR/checkpoints/<step>/`, `DIR/metrics.jsonl`, `DIR/tensorboard/` and
`DIR/loss.png`; `eval.py` writes `DIR/eval/<split>.json`. Every module that reads or writes a
workdir asks this one for the paths.
"""

from __future__ import annotations

import json
import os
from typing import Any

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
  """`workdir/checkpoints`; a path that already is a checkpoint directory is kept."""
  if os.path.basename(os.path.normpath(workdir)) == CHECKPOINT_DIR:
    return workdir
  return os.path.join(workdir, CHECKPOINT_DIR)


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, "metrics.jsonl")


def tensorboard_dir(workdir: str) -> str:
  return os.path.join(workdir, "tensorboard")


def loss_plot_path(workdir: str) -> str:
  return os.path.join(workdir, "loss.png")


def eval_path(workdir: str, split: str) -> str:
  return os.path.join(workdir, "eval", f"{split}.json")


def latest_params(workdir: str, abstract_params=None) -> tuple[Any, str]:
  """(params of the latest checkpoint in `workdir`, "DIR step N"); `abstract_params` as in
  `mgvm.train.checkpoint.load_params`. Fails naming the directory when it holds none."""
  from mgvm.train import checkpoint as checkpoint_lib

  directory = checkpoint_dir(workdir)
  with checkpoint_lib.Checkpointer(directory, save_every_steps=1) as ckpt:
    step = ckpt.latest_step()
  params = checkpoint_lib.load_params(directory, abstract_params, step=step)
  return params, f"{directory} step {step}"


def write_eval_result(workdir: str, result: dict[str, Any]) -> str:
  """Writes `result` to `DIR/eval/<result["split"]>.json`; returns the path."""
  path = eval_path(workdir, result["split"])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  return path
