"""Pieces the studies share: cached JSON results, train-then-test runs, seed statistics.

A study is many short runs; each one's result is a JSON file in its own workdir, written last
(atomically), so a rerun reuses every finished run and redoes only what is missing or was cut
off. While a process trains and tests a run it holds WORKDIR/study.lock, so several study
processes on the same output folder share the work: each skips the runs another one holds
(`RunBusy`). Comparisons are per seed (same seed = same init, data order and test set) and
call a difference real only when the two arms' seed ranges do not overlap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time

CLAIM_FILE = "study.lock"


class RunBusy(Exception):
  """Another live process is training this run (its workdir is the message)."""


@contextlib.contextmanager
def claim(workdir: str):
  """Holds WORKDIR/study.lock for the block; `RunBusy(workdir)` when a live process holds it
  (a lock left by a dead one is taken over)."""
  from mgvm import workdir as workdir_lib

  os.makedirs(workdir, exist_ok=True)
  try:
    with workdir_lib.lock(workdir, log=None, name=CLAIM_FILE):
      yield
  except workdir_lib.WorkdirLockedError:
    raise RunBusy(workdir) from None


def load(path: str):
  """The JSON at `path`, or None when there is none yet."""
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def save(path: str, value) -> None:
  """Writes `value` as JSON to `path` atomically (a cut-off run leaves no half file)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


def run_name(name: str, config) -> str:
  """`name` plus a hash of the whole config: a run whose settings changed is a new run."""
  digest = hashlib.sha1(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()
  return f"{name}-{digest[:8]}"


def run_once(workdir: str, compute) -> dict:
  """WORKDIR/result.json, else `compute()` (a JSON-able row) run while holding the run's claim
  and saved there; rechecked once the claim is held, in case another process finished it."""
  path = os.path.join(workdir, "result.json")
  cached = load(path)
  if cached is not None:
    return cached
  with claim(workdir):
    cached = load(path)
    if cached is not None:
      return cached
    row = compute()
    save(path, row)
  return row


def train_and_test(config, workdir: str, row: dict, *, split: str = "test") -> dict:
  """Trains `config` in `workdir`, evaluates top-1/top-5 on `split`; `row` plus the result,
  cached in WORKDIR/result.json (`run_once`)."""

  def compute():
    from mgvm.run import evaluate as eval_run
    from mgvm.run import train as train_run

    quiet = lambda _: None  # noqa: E731
    start = time.time()
    train_run.train(config, workdir, log=quiet)
    result = eval_run.evaluate(config, workdir, split=split, log=quiet)
    seconds = round(time.time() - start, 1)
    done = dict(row, top1=result["top1"], top5=result["top5"], seconds=seconds)
    print(json.dumps(done), flush=True)
    return done

  return run_once(workdir, compute)


def spread(values) -> dict:
  """Mean, population std, min, max and spread (max − min) of a list of per-seed values."""
  values = list(values)
  return {
    "mean": statistics.mean(values),
    "std": statistics.pstdev(values),
    "min": min(values),
    "max": max(values),
    "spread": max(values) - min(values),
    "runs": values,
  }


def compare(a: list[float], b: list[float]) -> str:
  """ "ahead" when every seed of `a` beats every seed of `b` (the ranges do not overlap),
  "behind" when every one is below, else "within the seed spread"."""
  if min(a) > max(b):
    return "ahead"
  if max(a) < min(b):
    return "behind"
  return "within the seed spread"
