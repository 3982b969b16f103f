"""MGTC at inference: accuracy, encoder FLOPs and throughput of a trained classifier vs the ratio.

  python benchmarks/compression_at_inference.py --workdir /tmp/mgvm/finetune
      [--config configs/finetune.py:runlocal] [--ratios 0,0.1,0.25,0.5] [--split test]
      [--kind mgtc] [--json OUT.json]

The classifier of `--workdir` (trained without compression, e.g. by the README's commands) is
evaluated on `--split` with the compressor dropping each `ratio` of the tokens at test time
only. FLOPs per clip come from XLA's cost analysis of the compiled forward pass (compressor
included); throughput is measured side by side in this run on one fixed batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def forward_cost(
  graphdef, params, compressor, batch_shape, repeats: int = 5
) -> tuple[float, float]:
  """(GFLOPs per clip from XLA's cost analysis, measured clips/s) of the compiled forward."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mgvm.evaluate.detection import flops_of
  from mgvm.train.steps import classify

  @jax.jit
  def forward(params, video):
    return classify(nnx.merge(graphdef, params), video, compressor, deterministic=True)[0]

  video = jnp.zeros(batch_shape, jnp.float32)
  compiled = forward.lower(params, video).compile()
  gflops = flops_of(compiled) / batch_shape[0] / 1e9
  jax.block_until_ready(compiled(params, video))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(compiled(params, video))
  return gflops, repeats * batch_shape[0] / (time.perf_counter() - start)


def measure(config, workdir: str, ratios, *, kind: str = "mgtc", split: str = "test") -> list[dict]:
  """One row per ratio: top-1/top-5 on `split`, GFLOPs per clip, clips/s, kept tokens."""
  import ml_collections
  from flax import nnx

  from mgvm.data import sources
  from mgvm.run import evaluate as eval_run
  from mgvm.tasks import finetune

  source = sources.resolve(config.data, log=lambda _: None)
  num_classes = finetune.num_classes(config, source)
  model = finetune.build_model(config, num_classes=num_classes)
  graphdef, _ = nnx.split(model, nnx.Param)
  params, _ = eval_run.restore_params(config, workdir, nnx.state(model, nnx.Param))
  batch = (config.eval.batch_size, config.num_frames, config.image_size, config.image_size, 3)
  rows = []
  for ratio in ratios:
    config.masking = (
      ml_collections.ConfigDict({"kind": kind, "ratio": ratio})
      if ratio
      else ml_collections.ConfigDict({"kind": ""})
    )
    result = eval_run.evaluate(config, workdir, split=split, log=lambda _: None)
    compressor = finetune.compressor(config, model.grid)
    gflops, clips_per_s = forward_cost(graphdef, params, compressor, batch)
    rows.append(
      {
        "ratio": ratio,
        "tokens": compressor.num_keep
        if compressor
        else model.encoder.num_tokens
        if hasattr(model.encoder, "num_tokens")
        else int(np.prod(model.grid)),
        "top1": result["top1"],
        "top5": result["top5"],
        "gflops_per_clip": gflops,
        "clips_per_s": clips_per_s,
      }
    )
    print(json.dumps(rows[-1]), flush=True)
  return rows


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--config", default="configs/finetune.py:runlocal")
  p.add_argument("--ratios", default="0,0.1,0.25,0.5")
  p.add_argument("--kind", default="mgtc", choices=("mgtc", "everest"))
  p.add_argument("--split", default="test")
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  import jax

  from mgvm.config import load_config

  rows = measure(
    load_config(a.config),
    a.workdir,
    [float(r) for r in a.ratios.split(",")],
    kind=a.kind,
    split=a.split,
  )
  base = rows[0]
  print(
    f"{'ratio':>6} {'tokens':>7} {'top-1':>6} {'top-5':>6} {'GFLOPs':>8} {'rel':>5} "
    f"{'clips/s':>8} {'speed-up':>8}"
  )
  for r in rows:
    print(
      f"{r['ratio']:6.2f} {r['tokens']:>7} {r['top1']:6.3f} {r['top5']:6.3f} "
      f"{r['gflops_per_clip']:8.4f} {r['gflops_per_clip'] / base['gflops_per_clip']:5.2f} "
      f"{r['clips_per_s']:8.1f} {r['clips_per_s'] / base['clips_per_s']:8.2f}"
    )
  if a.json:
    with open(a.json, "w") as f:
      json.dump(
        {"rows": rows, "args": vars(a), "jax": jax.__version__, "device": str(jax.devices()[0])},
        f,
        indent=1,
      )
  return rows


if __name__ == "__main__":
  main()
