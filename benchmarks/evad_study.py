"""The EVAD study on the synthetic detection data: keep rate x EW -> frame-mAP, GFLOPs, clips/s.

  python benchmarks/evad_study.py --out /tmp/mgvm/evad_study [--keeps 1.0,0.7,0.6] [--ews 1,4]
      [--steps 1500] [--init-from /tmp/mgvm/finetune] [--seeds 0]

Each setting trains `configs/detect.py:runlocal` (keep rate at blocks 1, 2, 3 of the 4-block
ViT; EW = keyframe query weight) for `--steps` steps from the same initialisation (a runlocal
classifier's encoder when `--init-from` is given), then evaluates frame-mAP@0.5 on the test
split and GFLOPs per clip (XLA cost analysis). EW has no effect without pruning, so keep 1.0
runs once. Throughput is measured afterwards for all settings in this one process, round-robin
(`--rounds` rounds of `--repeats` forward passes each on a batch of `--batch` clips), so the
ratios share the machine's conditions. Results: OUT/results.json and OUT/study.md; finished
runs are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settings(keeps, ews) -> list[tuple[float, float]]:
  """(keep, ew) pairs; keep 1.0 once (EW only weights pruning scores)."""
  out = []
  for keep in keeps:
    for ew in [ews[0]] if keep >= 1.0 else ews:
      out.append((keep, ew))
  return out


def make_config(keep: float, ew: float, seed: int, steps: int, init_from: str):
  from configs import detect

  config = detect.get_config(f"runlocal,keep={keep},ew={ew}")
  config.seed = seed
  config.total_steps = steps
  config.checkpoint_every_steps = steps
  config.init_from = init_from
  config.tensorboard = False
  return config


def run_one(out: str, keep: float, ew: float, seed: int, steps: int, init_from: str) -> dict:
  """Train + evaluate one setting; cached in OUT/keep<k>-ew<e>-s<seed>/result.json."""
  from mgvm.run import evaluate as eval_run
  from mgvm.run import train as train_run

  workdir = os.path.join(out, f"keep{keep:g}-ew{ew:g}-s{seed}")
  path = os.path.join(workdir, "result.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  config = make_config(keep, ew, seed, steps, init_from)
  start = time.time()
  trained = train_run.train(config, workdir, log=lambda _: None)
  result = eval_run.evaluate(config, workdir, split="test", log=lambda _: None)
  row = {
    "keep": keep,
    "ew": ew,
    "seed": seed,
    "frame_map": result["frame_map"],
    "gflops": result["gflops_per_clip"],
    "encoder_gflops": result["encoder_gflops_per_clip"],
    "tokens": result["tokens"],
    "final_loss": trained["metrics"].get("loss"),
    "train_s": round(time.time() - start, 1),
  }
  with open(path, "w") as f:
    json.dump(row, f)
  print(json.dumps(row), flush=True)
  return row


def throughput(configs: dict, *, batch: int, repeats: int, rounds: int) -> dict:
  """Clips/s of each config's compiled forward, measured round-robin in this process."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mgvm.evaluate.detection import predict_fn
  from mgvm.tasks import detect

  compiled = {}
  for name, config in configs.items():
    model = detect.build_model(config, num_classes=len(config.data.synthetic.classes))
    graphdef, params = nnx.split(model, nnx.Param)
    video = jnp.zeros((batch, config.num_frames, config.image_size, config.image_size, 3))
    fn = predict_fn(graphdef)
    jax.block_until_ready(fn(params, video))
    compiled[name] = (fn, params, video)
  seconds = {name: 0.0 for name in configs}
  for _ in range(rounds):
    for name, (fn, params, video) in compiled.items():
      start = time.perf_counter()
      for _ in range(repeats):
        jax.block_until_ready(fn(params, video))
      seconds[name] += time.perf_counter() - start
  return {name: rounds * repeats * batch / s for name, s in seconds.items()}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True)
  p.add_argument("--keeps", default="1.0,0.7,0.6")
  p.add_argument("--ews", default="1,4")
  p.add_argument("--steps", type=int, default=1500)
  p.add_argument("--init-from", default="")
  p.add_argument("--seeds", default="0")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--rounds", type=int, default=3)
  a = p.parse_args(argv)
  pairs = settings([float(k) for k in a.keeps.split(",")], [float(e) for e in a.ews.split(",")])
  seeds = [int(s) for s in a.seeds.split(",")]
  os.makedirs(a.out, exist_ok=True)
  rows = [
    run_one(a.out, keep, ew, seed, a.steps, a.init_from) for seed in seeds for keep, ew in pairs
  ]
  speed = throughput(
    {f"{k:g}/{e:g}": make_config(k, e, 0, a.steps, "") for k, e in pairs},
    batch=a.batch,
    repeats=a.repeats,
    rounds=a.rounds,
  )
  base = f"{pairs[0][0]:g}/{pairs[0][1]:g}"
  lines = [
    "| keep | EW | frame-mAP@0.5 (per seed) | GFLOPs / clip | encoder GFLOPs | "
    "tokens | clips/s | speed-up |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for keep, ew in pairs:
    mine = [r for r in rows if r["keep"] == keep and r["ew"] == ew]
    maps = ", ".join(f"{r['frame_map']:.3f}" for r in mine)
    name = f"{keep:g}/{ew:g}"
    lines.append(
      f"| {keep:g} | {ew:g} | {maps} | {mine[0]['gflops']:.4f} | "
      f"{mine[0]['encoder_gflops']:.4f} | {mine[0]['tokens']} | {speed[name]:.0f} | "
      f"{speed[name] / speed[base]:.2f} |"
    )
  result = {"rows": rows, "clips_per_s": speed, "args": vars(a)}
  with open(os.path.join(a.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(a.out, "study.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return result


if __name__ == "__main__":
  main()
