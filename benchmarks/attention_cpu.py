"""Attention kernels on CPU: `xla` vs `einsum` (mgvm.models.vit), side by side, with torch's SDPA.

  python benchmarks/attention_cpu.py [--dim 384 --depth 6 --heads 6 --frames 16 --size 112
      --batch 4 --rounds 7 --iters 3] [--json OUT.json]

One process, float32, every timing round-robin over the variants (`--rounds` rounds of
`--iters` calls each, after one warm-up call), medians per call:
- **attention**: the kernel alone on q, k, v [B, N, heads, D/heads] (N = tokens of the clip),
  forward and value+gradient, for `xla`, `einsum` and torch's
  `scaled_dot_product_attention` (forward; backward of sum(out²)) when torch imports;
- **GELU**: exact GELU on the MLP's hidden activations [B, N, 4·D], forward and gradient:
  mgvm's erf formula (`vit.gelu`), `jax.nn.gelu(approximate=False)` and torch's;
- **model**: a `VideoClassifier` of that size (ViT-S-like by default) built with
  `attention="xla"` and `"einsum"`: the forward (`deterministic=True`) and a fine-tuning step
  (cross-entropy, value_and_grad, AdamW update; drop path 0.1) jitted as training jits it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def interleaved(fns: dict, *, rounds: int, iters: int) -> dict:
  """Median seconds per call of each zero-argument fn ({(group, variant): fn}), round-robin."""
  for fn in fns.values():
    fn()  # compile / warm up
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(iters):
        fn()
      times[name].append((time.perf_counter() - start) / iters)
  return {name: statistics.median(t) for name, t in times.items()}


def _jax_timer(fn, *args):
  import jax

  return lambda: jax.block_until_ready(fn(*args))


def attention_fns(b: int, n: int, heads: int, hd: int) -> dict:
  import jax
  import jax.numpy as jnp

  from mgvm.models import vit

  keys = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(key, (b, n, heads, hd), jnp.float32) for key in keys)
  fns = {}
  for impl in ("xla", "einsum"):

    def attend(q, k, v, impl=impl):
      return vit.dot_product_attention(q, k, v, implementation=impl)

    grad = jax.jit(
      jax.value_and_grad(lambda q, k, v, f=attend: jnp.sum(f(q, k, v) ** 2), (0, 1, 2))
    )
    fns["attention forward", impl] = _jax_timer(jax.jit(attend), q, k, v)
    fns["attention value+grad", impl] = _jax_timer(grad, q, k, v)
  try:
    import numpy as np
    import torch
  except ImportError:
    return fns
  tq, tk, tv = (torch.from_numpy(np.array(a)).transpose(1, 2).contiguous() for a in (q, k, v))
  sdpa = torch.nn.functional.scaled_dot_product_attention

  def torch_fwd():
    with torch.no_grad():
      sdpa(tq, tk, tv)

  gq, gk, gv = (t.clone().requires_grad_(True) for t in (tq, tk, tv))

  def torch_grad():
    (sdpa(gq, gk, gv) ** 2).sum().backward()

  fns["attention forward", "torch SDPA"] = torch_fwd
  fns["attention value+grad", "torch SDPA"] = torch_grad
  return fns


def gelu_fns(b: int, n: int, hidden: int) -> dict:
  import jax
  import jax.numpy as jnp

  from mgvm.models import vit

  x = 2.0 * jax.random.normal(jax.random.key(1), (b, n, hidden), jnp.float32)
  variants = {"mgvm (erf)": vit.gelu, "jax.nn.gelu": lambda x: jax.nn.gelu(x, approximate=False)}
  fns = {}
  for name, f in variants.items():
    fns["GELU forward", name] = _jax_timer(jax.jit(f), x)
    fns["GELU grad", name] = _jax_timer(jax.jit(jax.grad(lambda x, f=f: jnp.sum(f(x)))), x)
  try:
    import numpy as np
    import torch
  except ImportError:
    return fns
  tx = torch.from_numpy(np.array(x))
  gx = tx.clone().requires_grad_(True)

  def torch_fwd():
    with torch.no_grad():
      torch.nn.functional.gelu(tx)

  def torch_grad():
    torch.nn.functional.gelu(gx).sum().backward()

  fns["GELU forward", "torch"] = torch_fwd
  fns["GELU grad", "torch"] = torch_grad
  return fns


def model_fns(a) -> dict:
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from mgvm import models

  video = jax.random.normal(jax.random.key(2), (a.batch, a.frames, a.size, a.size, 3))
  labels = jnp.arange(a.batch) % 10
  opt = optax.adamw(1e-4, weight_decay=0.05)
  fns = {}
  for impl in ("xla", "einsum"):
    model = models.VideoClassifier(
      None,
      dim=a.dim,
      depth=a.depth,
      num_heads=a.heads,
      num_classes=10,
      num_frames=a.frames,
      image_size=a.size,
      drop_path_rate=0.1,
      attention=impl,
      rngs=nnx.Rngs(0),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    opt_state = opt.init(params)

    @jax.jit
    def forward(params, video, graphdef=graphdef):
      return nnx.merge(graphdef, params)(video)[0]

    @jax.jit
    def step(params, opt_state, video, key, graphdef=graphdef):
      def loss_fn(params):
        model = nnx.merge(graphdef, params)
        logits, _ = model(video, deterministic=False, rngs=nnx.Rngs(dropout=key))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    fns["model forward", impl] = _jax_timer(forward, params, video)
    fns["fine-tuning step", impl] = _jax_timer(step, params, opt_state, video, jax.random.key(3))
  return fns


def environment() -> dict:
  import jax

  info = {
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "python": platform.python_version(),
  }
  try:
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
  except ImportError:
    pass
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    info["cpu"] = fields.get("Model name", "").strip()
    info["cpus"] = fields.get("CPU(s)", "").strip()
  except (OSError, subprocess.CalledProcessError):
    info["cpu"] = platform.processor()
  info["loadavg_before"] = os.getloadavg()[0]
  return info


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dim", type=int, default=384)
  p.add_argument("--depth", type=int, default=6)
  p.add_argument("--heads", type=int, default=6)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--iters", type=int, default=3)
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  env = environment()
  n = (a.frames // 2) * (a.size // 16) ** 2
  hd = a.dim // a.heads
  fns = {
    **attention_fns(a.batch, n, a.heads, hd),
    **gelu_fns(a.batch, n, 4 * a.dim),
    **model_fns(a),
  }
  seconds = interleaved(fns, rounds=a.rounds, iters=a.iters)
  env["loadavg_after"] = os.getloadavg()[0]
  print(
    f"# {a.batch} clips of {a.frames}x{a.size}² -> N={n} tokens, dim {a.dim}, depth {a.depth}, "
    f"{a.heads} heads (d={hd}), float32; {a.rounds} rounds x {a.iters} calls, medians"
  )
  print(f"# {json.dumps(env)}")
  print("| measurement | variant | ms per call | × the first variant |")
  print("|---|---|---|---|")
  groups = list(dict.fromkeys(group for group, _ in seconds))
  for group in groups:
    rows = [(variant, sec) for (g, variant), sec in seconds.items() if g == group]
    for variant, sec in rows:
      print(f"| {group} | {variant} | {1e3 * sec:.2f} | {sec / rows[0][1]:.2f} |")
  ms = {f"{group} / {variant}": round(1e3 * sec, 3) for (group, variant), sec in seconds.items()}
  result = {"args": vars(a), "env": env, "tokens": n, "ms": ms}
  if a.json:
    with open(a.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
