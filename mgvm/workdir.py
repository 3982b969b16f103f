"""What a run's workdir holds and where: checkpoints, metrics, the loss curve, evaluation results.

`train.py` writes `DIR/checkpoints/<step>/`, `DIR/metrics.jsonl`, `DIR/tensorboard/`,
`DIR/loss.png` and `DIR/config.json` (the config of the run, checked when it resumes), and holds
`DIR/train.lock` while it runs (one writer per workdir); `eval.py` writes `DIR/eval/<split>.json`
(`<split>.<what differs>.json` for an evaluation with other settings than the run's, or a tag).
Every module that reads or writes a workdir asks this one for the paths.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import socket
import time
from typing import Any, Callable, Iterator, Mapping

from mgvm.trees import flatten_dict

CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = "train.lock"
CONFIG_FILE = "config.json"
# Fields a resumed run may change freely: how often it logs and saves, what it evaluates, and
# `init_from` (only read by a run that starts from step 0), `restore_step`. `total_steps` and
# `total_epochs` may only grow.
RESUME_MAY_CHANGE = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "tensorboard",
  "init_from",
  "allow_config_change",
  "restore_step",
  "data.threads",
  "eval.",
  "mesh.",
  "accum_steps",  # the same update (docs/scale.md), in another number of micro-batches
)


class WorkdirLockedError(RuntimeError):
  """Another training run holds the workdir."""


class ConfigChangedError(ValueError):
  """A resumed run's config differs from the recorded one in a field that changes the run."""


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


def eval_path(workdir: str, name: str) -> str:
  """`DIR/eval/<name>.json`; `name` is the split, plus what the evaluation changed (`eval_name`)."""
  return os.path.join(workdir, "eval", f"{name}.json")


def require_checkpoints(workdir: str) -> str:
  """`workdir`'s checkpoint directory; fails naming it when no run wrote there (and creates
  nothing, so a mistyped --workdir leaves no folders behind)."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"No checkpoint found in {directory}: no train.py run wrote to {workdir} (is --workdir right?)"
    )
  return directory


def latest_params(workdir: str, abstract_params=None, step: int | None = None) -> tuple[Any, str]:
  """(params of `workdir`'s latest checkpoint, or of `step`; "DIR step N"); `abstract_params` as
  in `mgvm.train.checkpoint.read_params`. Fails naming the directory when it holds none."""
  from mgvm.train import checkpoint as checkpoint_lib

  directory = require_checkpoints(workdir)
  params, step = checkpoint_lib.read_params(directory, abstract_params, step=step or None)
  return params, f"{directory} step {step}"


def write_eval_result(workdir: str, result: dict[str, Any], name: str | None = None) -> str:
  """Writes `result` to `DIR/eval/<name>.json` (default: its split); returns the path."""
  path = eval_path(workdir, name or result["split"])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  return path


# Settings that change what an evaluation measures; an eval whose config differs from the run's
# recorded one in any of them writes a result file of its own (`eval_name`).
EVAL_SETTINGS = (
  "model.",
  "masking.",
  "data.",
  "eval.",
  "num_frames",
  "image_size",
  "num_classes",
  "restore_step",
  "seed",
)
# The split is named anyway; batching and what only training reads change no result.
EVAL_NEUTRAL = (
  "eval.split",
  "eval.batch_size",
  "data.train_split",
  "data.shuffle_buffer",
  "data.flip",
  "data.crop_scale",
  "data.rand_augment",
  "data.random_erase",
  "data.num_sample",
  "data.threads",
  "model.drop_path_rate",
  "model.fc_drop_rate",
)
_TAG_CHARS = re.compile(r"^[A-Za-z0-9._,=+-]+$")


def eval_settings(workdir: str, config) -> dict[str, Any]:
  """{key: value} of every `EVAL_SETTINGS` field in which `config` differs from the config the
  run recorded in `DIR/config.json` (empty when none is recorded)."""
  path = config_path(workdir)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    old = _flat_config(json.load(f))
  new = _flat_config(config.to_dict())
  return {
    key: new.get(key, "<absent>")
    for key in sorted(set(old) | set(new))
    if key.startswith(EVAL_SETTINGS)
    and not key.startswith(EVAL_NEUTRAL)
    and old.get(key, "<absent>") != new.get(key, "<absent>")
  }


def eval_name(
  split: str, settings: Mapping[str, Any], *, checkpoint: str = "", tag: str = ""
) -> str:
  """The result's name: `split`, then `.tag` when given, else what differs from the run
  (`ckpt=<file>` for a torch checkpoint, `key=value` per changed setting, or a digest of them
  when that would be long). `test` plus `masking.ratio=0.4` gives `test.masking.ratio=0.4`."""
  if tag:
    if not _TAG_CHARS.match(tag):
      raise ValueError(f"--tag={tag!r}: use letters, digits and . _ , = + - only")
    return f"{split}.{tag}"
  parts = [f"ckpt={os.path.basename(os.path.normpath(checkpoint))}"] if checkpoint else []
  for key, value in settings.items():
    shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    parts.append(f"{key}={shown}")
  if not parts:
    return split
  suffix = re.sub(r"[^A-Za-z0-9._,=+\-\[\]]", "_", ",".join(parts))
  if len(suffix) > 80:
    suffix = "settings-" + hashlib.sha1(suffix.encode()).hexdigest()[:8]
  return f"{split}.{suffix}"


# ----------------------------------------------------------------------------- one writer


def lock_path(workdir: str, name: str = LOCK_FILE) -> str:
  return os.path.join(workdir, name)


def _holder_is_gone(holder: Mapping[str, Any]) -> bool:
  """True when the lock's process is known to be dead (same host, no such PID)."""
  if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
    return False
  try:
    os.kill(holder["pid"], 0)
  except ProcessLookupError:
    return True
  except PermissionError:  # alive, another user's
    return False
  return False


def _age_seconds(path: str) -> float:
  try:
    return time.time() - os.path.getmtime(path)
  except FileNotFoundError:
    return float("inf")


@contextlib.contextmanager
def lock(
  workdir: str, log: Callable[[str], None] = print, *, name: str = LOCK_FILE
) -> Iterator[str]:
  """Holds `DIR/train.lock` (or `DIR/<name>`: host, PID, start time; created atomically) for
  the block.

  A lock whose process is gone (same host, PID not running) is stale and taken over with a
  message; a live holder fails at once with `WorkdirLockedError` naming it.
  """
  log = log or (lambda _: None)
  path = lock_path(workdir, name)
  mine = {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
  }
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        with open(path) as f:
          holder = json.load(f)
      except (OSError, ValueError):
        holder = {}
      fresh = not holder and _age_seconds(path) < 10  # another run is still writing it
      if fresh or (holder and not _holder_is_gone(holder)):
        who = (
          f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('started')}"
          if holder
          else "it is writing its lock file now"
        )
        raise WorkdirLockedError(
          f"{workdir} is in use by another training run ({who}; {path}). Wait for it to end, "
          f"use another --workdir, or delete {path} if that run is gone."
        ) from None
      log(f"removing the stale lock {path} of a run that is gone: {holder or 'unreadable'}")
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
      continue
    with os.fdopen(fd, "w") as f:
      json.dump(mine, f)
    break
  else:
    raise WorkdirLockedError(f"could not take {path}: another run keeps creating it")
  try:
    yield path
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


# ----------------------------------------------------------------------------- the recorded config


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def _flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """{dotted key: value} of a config dict as `DIR/config.json` stores it (JSON round trip)."""
  return flatten_dict(json.loads(json.dumps(config, default=str)))


def config_changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
  """`key: recorded -> now` for every field a resumed run may not change (`RESUME_MAY_CHANGE`;
  `total_steps` / `total_epochs` may grow). Both are nested dicts as `config.to_dict()` gives (JSON round-trip)."""
  old, new = _flat_config(recorded), _flat_config(now)
  changes = []
  for key in sorted(set(old) | set(new)):
    if key.startswith(RESUME_MAY_CHANGE) or old.get(key, "<absent>") == new.get(key, "<absent>"):
      continue
    if (
      key in ("total_steps", "total_epochs") and key in old and key in new and new[key] >= old[key]
    ):
      continue
    changes.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
  return changes


def record_config(workdir: str, config, *, resuming: bool, log: Callable[[str], None] = print):
  """Writes `DIR/config.json`; on a resume first compares it with the recorded one.

  A change in a field that alters the run (model, task, data, optimizer, batch, seed, ...) fails
  with `ConfigChangedError` listing each one, unless `config.allow_config_change` is set; then
  the changes are logged and the new config is recorded.
  """
  log = log or (lambda _: None)
  now = config.to_dict()
  path = config_path(workdir)
  if resuming and os.path.exists(path):
    with open(path) as f:
      recorded = json.load(f)
    changes = config_changes(recorded, now)
    if changes and not config.get("allow_config_change", False):
      raise ConfigChangedError(
        f"{workdir} was trained with another config ({path}); resuming would silently change "
        f"the run:\n  " + "\n  ".join(changes) + "\nUse another --workdir, or pass "
        "--config.allow_config_change=True to resume with the new values."
      )
    if changes:
      log("resuming with a changed config (allow_config_change):\n  " + "\n  ".join(changes))
  elif resuming:
    log(f"{path} is missing (a run of an older mgvm?); recording this run's config")
  with open(path, "w") as f:
    json.dump(now, f, indent=1, default=str)
  return path
