"""The masking study on the synthetic data set: pre-train with each masker, fine-tune, test.

  python benchmarks/masking_study.py --out /tmp/mgvm/study [--seeds 0,1] [--pretrain-steps 300]
      [--finetune-steps 1000] [--methods tube,tube+mgtc,mgmae,everest] [--fps]

Every method pre-trains the runlocal ViT (`configs/pretrain.py:runlocal`) for the same number
of steps with its masker, then fine-tunes it (`configs/finetune.py:runlocal`, all tokens) and
evaluates top-1 on the test split (2 clips per video); each seed changes the model init, the
data order and the masks. `--fps` adds accuracy vs frame rate at a fixed token budget:
fine-tuning from the tube pre-training with 8 frames at 6 fps (all 64 tokens) against 16
frames at 12 fps with MGTC keeping 64 of 128 (`fps_scale=2`). Results go to OUT/results.json,
OUT/study.md (a table with mean ± spread) and OUT/study.png; finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# method -> (pretrain config argument, masking overrides)
METHODS = {
  "tube": ("masker=tube", {}),
  "tube+mgtc": ("masker=tube,compress=mgtc", {}),
  "mgmae": ("masker=tube", {"kind": "mgmae", "ratio": 0.75}),
  "everest": ("masker=random,compress=everest", {"compress": {"kind": "everest", "ratio": 0.5}}),
}


def _pretrain_config(method: str, seed: int, steps: int):
  import ml_collections

  from configs import common, pretrain

  arg, masking = METHODS[method]
  config = pretrain.get_config(f"runlocal,{arg}")
  if masking.get("kind") == "mgmae":
    config.masking = ml_collections.ConfigDict(masking)
  elif "compress" in masking:
    config.masking.compress = ml_collections.ConfigDict(masking["compress"])
  return common.short_run(config, seed=seed, steps=steps)


def _finetune_config(seed: int, steps: int, init_from: str, fps_scale: int = 1):
  from configs import common, finetune

  config = finetune.get_config("runlocal" + (f",fps_scale={fps_scale}" if fps_scale > 1 else ""))
  config.init_from = init_from
  return common.short_run(config, seed=seed, steps=steps)


def _done(path: str) -> dict | None:
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def run_one(out: str, name: str, seed: int, pretrain_config, finetune_config_fn) -> dict:
  """Pre-train (when given), fine-tune, evaluate; cached in OUT/<name>-s<seed>/result.json."""
  from mgvm.run import evaluate as eval_run
  from mgvm.run import train as train_run

  workdir = os.path.join(out, f"{name}-s{seed}")
  cached = _done(os.path.join(workdir, "result.json"))
  if cached:
    return cached
  quiet = lambda _: None  # noqa: E731
  start = time.time()
  row = {"method": name, "seed": seed}
  if pretrain_config is not None:
    pre = train_run.train(pretrain_config, os.path.join(workdir, "pretrain"), log=quiet)
    row["pretrain_loss"] = pre.get("loss")
    row["pretrain_s"] = round(time.time() - start, 1)
  config = finetune_config_fn(os.path.join(workdir, "pretrain"))
  train_run.train(config, os.path.join(workdir, "finetune"), log=quiet)
  result = eval_run.evaluate(config, os.path.join(workdir, "finetune"), split="test", log=quiet)
  row.update(top1=result["top1"], top5=result["top5"], seconds=round(time.time() - start, 1))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "result.json"), "w") as f:
    json.dump(row, f)
  print(json.dumps(row), flush=True)
  return row


def summarise(rows: list[dict]) -> list[dict]:
  """Per method: mean top-1, spread (max - min) and the per-seed values."""
  table = {}
  for r in rows:
    table.setdefault(r["method"], []).append(r["top1"])
  return [
    {"method": m, "mean": statistics.mean(v), "spread": max(v) - min(v), "runs": v}
    for m, v in table.items()
  ]


def plot(summary: list[dict], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(1.4 * len(summary) + 2, 3.2))
  for i, s in enumerate(summary):
    ax.bar(i, s["mean"], color="#4c72b0", alpha=0.6)
    ax.plot([i] * len(s["runs"]), s["runs"], "ko", ms=4)
  ax.set_xticks(range(len(summary)), [s["method"] for s in summary], rotation=15)
  ax.set_ylabel("test top-1")
  ax.axhline(1 / 15, color="grey", ls="--", lw=1, label="chance")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True)
  p.add_argument("--seeds", default="0,1")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--pretrain-steps", type=int, default=300)
  p.add_argument("--finetune-steps", type=int, default=1000)
  p.add_argument("--fps", action="store_true", help="also accuracy vs FPS at a fixed budget")
  a = p.parse_args(argv)
  seeds = [int(s) for s in a.seeds.split(",")]
  methods = a.methods.split(",")
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    sys.exit(f"unknown methods {unknown}; known: {sorted(METHODS)}")
  os.makedirs(a.out, exist_ok=True)
  rows = []
  for seed in seeds:
    for method in methods:
      rows.append(
        run_one(
          a.out,
          method,
          seed,
          _pretrain_config(method, seed, a.pretrain_steps),
          lambda init, seed=seed: _finetune_config(seed, a.finetune_steps, init),
        )
      )
  fps_rows = []
  if a.fps:
    for seed in seeds:
      init = os.path.join(a.out, f"tube-s{seed}", "pretrain")
      if not os.path.isdir(init):  # the tube pre-training of this seed is the starting point
        run_one(
          a.out,
          "tube",
          seed,
          _pretrain_config("tube", seed, a.pretrain_steps),
          lambda i, seed=seed: _finetune_config(seed, a.finetune_steps, i),
        )
      for scale, name in (
        (1, "8 frames @ 6 fps, all 64 tokens"),
        (2, "16 frames @ 12 fps, MGTC keeps 64 of 128"),
      ):
        fps_rows.append(
          run_one(
            a.out,
            f"fps{scale}",
            seed,
            None,
            lambda _, seed=seed, scale=scale: _finetune_config(seed, a.finetune_steps, init, scale),
          )
          | {"setting": name}
        )
  summary = summarise(rows)
  fps_summary = summarise(fps_rows) if fps_rows else []
  result = {
    "rows": rows,
    "summary": summary,
    "fps_rows": fps_rows,
    "fps_summary": fps_summary,
    "args": vars(a),
  }
  with open(os.path.join(a.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  lines = ["| method | test top-1, mean | spread (max − min) | runs |", "|---|---|---|---|"]
  lines += [
    f"| {s['method']} | {s['mean']:.3f} | {s['spread']:.3f} | "
    f"{', '.join(f'{v:.3f}' for v in s['runs'])} |"
    for s in summary + fps_summary
  ]
  with open(os.path.join(a.out, "study.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  plot(summary + fps_summary, os.path.join(a.out, "study.png"))
  return result


if __name__ == "__main__":
  main()
