"""Compile-only memory per device of the ViT-B / ViT-L backward at 16×224, remat none / full / dots.

  python benchmarks/remat_memory.py [--sizes B,L] [--batch 8] [--dtype bfloat16]

Nothing runs and nothing is allocated: XLA's memory analysis of `jit(grad)` of the encoder's
blocks on `[batch, 1568, dim]` tokens (16 frames × 224², tubelet 2×16×16), compiled on the CPU
with the options under which XLA:CPU keeps the recomputation and schedules for memory as the GPU
and TPU compilers do (CSE off, memory-optimised scheduler; with its defaults XLA:CPU merges the
recomputed forward back and remat shows no change, tests/test_remat.py). The patch embedding
and the head hold the same memory with or without remat and are left out. The estimate of a
fine-tuning step's peak per device adds the params, their AdamW state and the gradient (float32,
`mgvm.train.state.memory_per_device`, fsdp = 1) to the backward's temporaries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CPU_AS_ACCELERATOR = {
  "xla_disable_hlo_passes": "cse",
  "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
}
GIB = 1024**3
TOKENS = 8 * 14 * 14  # 16 frames / 2 × (224 / 16)²


def backward_bytes(size: str, remat: str, batch: int, dtype: str) -> tuple[int, float]:
  """(temporary bytes of jit(grad) of the encoder blocks, compile seconds)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mgvm import models

  encoder = nnx.eval_shape(
    lambda: models.VideoViT(
      size,
      num_frames=16,
      image_size=224,
      remat=remat,
      attention="xla",
      dtype=jnp.dtype(dtype),
      rngs=nnx.Rngs(0),
    )
  )
  graphdef, params = nnx.split(encoder)
  dim = models.SIZES[size].dim
  tokens = jax.ShapeDtypeStruct((batch, TOKENS, dim), jnp.dtype(dtype))

  def loss(params, tokens):
    out = nnx.merge(graphdef, params).encode(tokens)
    return jnp.mean(jnp.square(out.astype(jnp.float32)))

  start = time.perf_counter()
  compiled = jax.jit(jax.grad(loss)).lower(params, tokens).compile(CPU_AS_ACCELERATOR)
  return compiled.memory_analysis().temp_size_in_bytes, time.perf_counter() - start


def state_bytes(size: str) -> float:
  """Params + AdamW state + gradient of the classifier (float32, one device), bytes."""
  import jax
  import numpy as np
  from flax import nnx

  from mgvm import models

  model = nnx.eval_shape(
    lambda: models.VideoClassifier(
      size, num_classes=400, num_frames=16, image_size=224, rngs=nnx.Rngs(0)
    )
  )
  params = nnx.state(model, nnx.Param)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  return 16.0 * count  # 4 params + 8 AdamW + 4 gradient


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="B,L")
  p.add_argument("--batch", type=int, default=8, help="clips per device")
  p.add_argument("--dtype", default="bfloat16", help="compute dtype of the activations")
  p.add_argument("--budget-gib", type=float, default=80.0, help="device memory to compare with")
  args = p.parse_args(argv)
  import jax

  print(f"jax {jax.__version__}; batch {args.batch} per device, 16×224, {args.dtype} activations")
  print("| size | remat | backward temporaries | vs none | + params, AdamW, gradient | fits |")
  print("|---|---|---:|---:|---:|---|")
  rows = []
  for size in args.sizes.split(","):
    fixed = state_bytes(size)
    base = None
    for remat in ("none", "full", "dots"):
      temp, seconds = backward_bytes(size, remat, args.batch, args.dtype)
      base = base or temp
      total = (temp + fixed) / GIB
      row = dict(size=size, remat=remat, temp_gib=temp / GIB, total_gib=total, compile_s=seconds)
      rows.append(row)
      print(
        f"| ViT-{size} | {remat} | {temp / GIB:.2f} GiB | {temp / base:.2f} | {total:.2f} GiB | "
        f"{'yes' if total <= args.budget_gib else 'no'} (of {args.budget_gib:g} GiB) |",
        flush=True,
      )
  return rows


if __name__ == "__main__":
  main()
