"""Flow end-point error (EPE) on synthetic pairs: ours (`mgvm.flow`) vs zero flow vs Farnebäck
vs RAFT; with `--cost`, what the flow costs MGMAE's pre-training (FLOPs per clip, CPU step share).

  python benchmarks/flow_epe.py [--size 64] [--seeds 4] [--videos 8] [--fps 4] [--json OUT.json]
      [--raft small,large] [--raft-weights small=PATH,large=PATH] [--raft-iterations 12]
  python benchmarks/flow_epe.py --cost [--raft-weights ...] [--json OUT.json]

1. Translating square: a random-texture square (`square` px) moves by a known displacement over
   a textured or smooth background; EPE over the square's interior (≥ 3 px inside its edges in
   frame a). Textures are sums of random plane waves, evaluated exactly at sub-pixel shifts.
2. The synthetic motion data set (`mgvm.datasets.synthetic`, dense ground-truth flow from
   `with_flow=True`): EPE over all pixels and over the objects' boxes, consecutive frames of
   `--videos` test videos rendered at `--fps` (4: 0.8-1.6 px per frame; the native 10-60 fps
   move objects by < 0.7 px), translating classes only (move_*: one displacement per object),
   no distractors.
Farnebäck is OpenCV's (`cv2.calcOpticalFlowFarneback`, levels 3, window 15, 3 iterations,
poly_n 5, σ 1.2) on uint8 grey, when `cv2` imports; its flow has our convention. RAFT is
`mgvm.flow.raft` with `--raft-iterations` updates and the converted checkpoints of
`--raft-weights`; a variant without one runs with random weights (seed 0), whose flow is
meaningless: its column is labelled "random init" (no trained weights can be fetched here).

`--cost` (CPU, ≈ 5 minutes on 2 cores): GFLOP per clip by XLA's cost analysis of the compiled
program (RAFT's updates unrolled: XLA counts a loop body once) of MGMAE's flow (15 pairs of a
16 × 224² clip, `--flow-iterations` 6) against the ViT-B pre-training step per clip; then, on
the CPU, a small pre-training step (dim 384, depth 6, 16 × 112², batch 4, float32, as
benchmarks/accelerator.py's CPU rows) with tube masking, MGMAE + LK and MGMAE + RAFT-small
(median of 3 steps after 1), and the flow alone on the same batch. LK has no FLOP figure: its
pyramid levels and iterations are loops that XLA's cost analysis counts once.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = (  # name, displacement (dx, dy) px, textured background
  ("sub-pixel (2.5, -1.0), textured bg", (2.5, -1.0), True),
  ("sub-pixel (2.5, -1.0), smooth bg", (2.5, -1.0), False),
  ("multi-pixel (6, 3), textured bg", (6.0, 3.0), True),
  ("multi-pixel (6, 3), smooth bg", (6.0, 3.0), False),
)


def _waves(rng: np.random.Generator, count: int, wavelengths: tuple[float, float]):
  k = 2 * np.pi / rng.uniform(*wavelengths, count)
  theta = rng.uniform(0, 2 * np.pi, count)
  return (
    k * np.cos(theta),
    k * np.sin(theta),
    rng.uniform(0, 2 * np.pi, count),
    rng.uniform(0.5, 1.0, count) / count,
  )


def _texture(waves, x: np.ndarray, y: np.ndarray, channel: int) -> np.ndarray:
  kx, ky, phase, amp = waves
  return sum(
    a * np.sin(u * x + v * y + p + 1.3 * channel) for u, v, p, a in zip(kx, ky, phase, amp)
  )


def translating_square(
  seed: int,
  displacement: tuple[float, float],
  *,
  size: int = 64,
  square: int = 20,
  textured_background: bool = True,
):
  """(frame_a, frame_b float32 [H, W, 3] in about [-1, 1], flow [H, W, 2], interior bool [H, W]).

  The square's top-left corner is at the image centre minus half the square minus half the
  displacement in frame a, plus the displacement in frame b; the background is static.
  """
  rng = np.random.default_rng(seed)
  fg, bg = _waves(rng, 6, (5.0, 14.0)), _waves(rng, 6, (6.0, 20.0))
  dx, dy = displacement
  x0 = size / 2 - square / 2 - dx / 2
  y0 = size / 2 - square / 2 - dy / 2
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)

  def frame(ox, oy):
    inside = (xs >= x0 + ox) & (xs < x0 + ox + square) & (ys >= y0 + oy) & (ys < y0 + oy + square)
    out = np.empty((size, size, 3))
    for c in range(3):
      back = _texture(bg, xs, ys, c) if textured_background else 0.2 * (xs - ys) / size - 0.3
      out[..., c] = np.where(inside, 0.6 * _texture(fg, xs - ox, ys - oy, c) + 0.2, back)
    return out.astype(np.float32), inside

  a, inside = frame(0.0, 0.0)
  b, _ = frame(dx, dy)
  flow = np.where(inside[..., None], np.float32([dx, dy]), 0).astype(np.float32)
  m = 3
  interior = (xs >= x0 + m) & (xs < x0 + square - m) & (ys >= y0 + m) & (ys < y0 + square - m)
  return a, b, flow, interior


def epe(flow: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
  """Mean end-point error over the pixels `where`."""
  return float(np.linalg.norm(flow - truth, axis=-1)[where].mean())


def _uint8_grey(frame: np.ndarray) -> np.ndarray:
  g = frame.mean(-1)
  lo, hi = g.min(), g.max()
  return np.clip((g - lo) * (255 / max(hi - lo, 1e-6)) + 0.5, 0, 255).astype(np.uint8)


def farneback(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray | None:
  """OpenCV Farnebäck flow [H, W, 2] of one pair [H, W, 3], or None without cv2."""
  try:
    import cv2
  except ImportError:
    return None
  both = np.stack([frame_a, frame_b])
  grey = _uint8_grey(both.reshape(-1, *frame_a.shape[1:])).reshape(2, *frame_a.shape[:2])
  return cv2.calcOpticalFlowFarneback(grey[0], grey[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)


RAFT_SCALES = {  # frames' (mean, std) that `RaftFlow` undoes: squares in about [-1, 1], videos in [0, 1]
  "square": ((0.5,) * 3, (0.5,) * 3),
  "synthetic": ((0.0,) * 3, (1.0,) * 3),
}


def raft_columns(names: str, weights: str, iterations: int) -> dict[str, tuple[str, str]]:
  """{column: (variant, weights path or "")} for `--raft` names (small, large) and
  `--raft-weights` (small=PATH,large=PATH); "" = random init."""
  given = dict(item.split("=", 1) for item in filter(None, weights.split(",")))
  out = {}
  for name in filter(None, names.split(",")):
    if name not in ("small", "large"):
      raise ValueError(f"--raft takes small and/or large, got {name!r}")
    path = given.get(name, "")
    label = f"RAFT-{name} ({iterations} it.{'' if path else ', random init'})"
    out[label] = (f"raft_{name}", path)
  return out


@functools.lru_cache(maxsize=None)
def _raft(variant: str, weights: str, iterations: int, scale: str):
  import jax

  from mgvm.flow import raft, raft_weights

  model = raft_weights.load(weights) if weights else raft.build(variant, seed=0)
  mean, std = RAFT_SCALES[scale]
  return jax.jit(raft.RaftFlow(model, iterations=iterations, mean=mean, std=std))


def raft_flow(frames_a, frames_b, variant, weights, iterations, scale) -> np.ndarray:
  """RAFT's flow on numpy batches [B, H, W, 3] → [B, H, W, 2], in batches of 32 pairs."""
  fn = _raft(variant, weights, iterations, scale)
  return np.concatenate(
    [
      np.asarray(fn(frames_a[i : i + 32], frames_b[i : i + 32]))
      for i in range(0, len(frames_a), 32)
    ]
  )


@functools.lru_cache(maxsize=None)
def _ours(**options):
  import jax

  from mgvm import flow

  return jax.jit(functools.partial(flow.estimate, **options))


def ours(frames_a: np.ndarray, frames_b: np.ndarray, **options) -> np.ndarray:
  """mgvm.flow.estimate on numpy batches [B, H, W, 3] → [B, H, W, 2]."""
  return np.asarray(_ours(**options)(frames_a, frames_b))


def square_table(size: int, seeds: int, raft=None, iterations: int = 12, **options) -> list[dict]:
  rows = []
  for name, d, textured in CASES:
    pairs = [
      translating_square(s, d, size=size, textured_background=textured) for s in range(seeds)
    ]
    a, b, truth, where = (np.stack(p) for p in zip(*pairs))
    fl = ours(a, b, **options)
    fb = [farneback(a[i], b[i]) for i in range(seeds)]
    rows.append(
      {
        "case": name,
        "ours": epe(fl, truth, where),
        "zero": epe(np.zeros_like(truth), truth, where),
        "farneback": None if fb[0] is None else epe(np.stack(fb), truth, where),
        **{
          column: epe(raft_flow(a, b, *spec, iterations, "square"), truth, where)
          for column, spec in (raft or {}).items()
        },
      }
    )
  return rows


def synthetic_table(
  size: int, videos: int, fps: float, raft=None, iterations: int = 12, **options
) -> list[dict]:
  from mgvm.datasets import synthetic

  config = synthetic.SyntheticConfig(
    image_size=size, classes=synthetic.TRANSLATIONS, max_distractors=0
  )
  a, b, truth, boxes = [], [], [], []
  for index in range(videos):
    v = synthetic.render_video(config, 0, "test", index, with_flow=True, fps=fps)
    frames = v.frames.astype(np.float32) / 255
    a.append(frames[:-1])
    b.append(frames[1:])
    truth.append(v.flow)
    box = np.zeros(v.flow.shape[:3], bool)
    for i, frame_boxes in enumerate(v.object_boxes[:-1]):
      for x1, y1, x2, y2 in np.clip(np.round(frame_boxes * size).astype(int), 0, size):
        box[i, y1:y2, x1:x2] = True
    boxes.append(box)
  a, b, truth, boxes = (np.concatenate(x) for x in (a, b, truth, boxes))
  everywhere = np.ones(boxes.shape, bool)
  fl = ours(a, b, **options)
  fb = [farneback(a[i], b[i]) for i in range(len(a))]
  fb = None if fb[0] is None else np.stack(fb)
  rafts = {c: raft_flow(a, b, *spec, iterations, "synthetic") for c, spec in (raft or {}).items()}
  rows = []
  for name, where in (
    ("synthetic move_*: all pixels", everywhere),
    ("synthetic move_*: object boxes", boxes),
  ):
    rows.append(
      {
        "case": name,
        "ours": epe(fl, truth, where),
        "zero": epe(np.zeros_like(truth), truth, where),
        "farneback": None if fb is None else epe(fb, truth, where),
        **{column: epe(flow, truth, where) for column, flow in rafts.items()},
      }
    )
  rows[-1]["pairs"] = len(a)
  return rows


# ----------------------------------------------------------------------------- cost


def _random_weights(variant: str, directory: str) -> str:
  """A converted file of random weights (the cost does not depend on the values)."""
  from mgvm.flow import raft, raft_weights

  path = os.path.join(directory, f"{variant}_random.npz")
  params = raft_weights.params_of(raft.build(variant))
  raft_weights.save(path, variant, params, "random init (seed 0): meaningless flow")
  return path


def flow_gflop_per_clip(flow_fn, frames: int = 16, size: int = 224) -> float:
  """GFLOP of MGMAE's `pair_flows` on one clip (frames − 1 pairs), compiled cost analysis."""
  import jax
  import jax.numpy as jnp

  from mgvm.masking import mgmae

  video = jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.float32)
  base = jnp.full((1,), frames // 2, jnp.int32)
  compiled = jax.jit(lambda v: mgmae.pair_flows(v, base, flow_fn)).lower(video).compile()
  return compiled.cost_analysis()["flops"] / 1e9


def _pretrain(shape, masking: dict):
  """(compiled step, state, batch) of configs/pretrain.py at `shape` with `masking` overrides
  (benchmarks/accelerator.py builds it as train.py does)."""
  import jax

  from benchmarks import accelerator as acc

  config = acc.make_config("pretrain", "masker=mgmae" if masking else "", shape)
  config.masking.update(masking)
  bench = acc.Bench(None, jax.devices()[0])
  fn, abstract_state, init = bench.train_program(config, None)
  batch = bench.batch(shape, labels=False)
  return fn.lower(abstract_state, batch), init, batch


def cost_rows(weights: dict[str, str], iterations: int, steps: int = 3) -> list[dict]:
  """FLOPs per clip at MGMAE's scale, then CPU step times at a small scale (module docstring)."""
  import tempfile

  import jax

  from benchmarks import accelerator as acc
  from mgvm.data.device_ops import model_video
  from mgvm.flow import raft, raft_weights
  from mgvm.masking import mgmae

  rows = []
  tmp = tempfile.mkdtemp(prefix="flow_cost_")
  paths = {v: weights.get(v) or _random_weights(v, tmp) for v in ("raft_small", "raft_large")}
  vit_b = acc.Shape("B", (("size", "B"),), 16, 224, 1, "float32")
  lowered, _, _ = _pretrain(vit_b, {})
  step = acc.cost_flops(lowered) / 1e9
  rows.append({"what": "ViT-B pre-training step (tube), 16 x 224², per clip", "gflop": step})
  for variant in ("raft_small", "raft_large"):
    fn = raft.RaftFlow(raft_weights.load(paths[variant]), iterations=iterations, unroll=True)
    flow = flow_gflop_per_clip(fn)
    rows.append(
      {
        "what": f"{variant} flow, 15 pairs at 224², {iterations} it., per clip",
        "gflop": flow,
        "share": flow / (flow + step),
      }
    )
  small = acc.Shape("cpu", acc.CPU_MODEL, 16, 112, 4, "float32")
  times = {}
  for name, masking in (
    ("tube", {}),
    ("mgmae + lk", {"flow": "lk"}),
    (
      "mgmae + raft_small",
      {"flow": "raft_small", "flow_weights": paths["raft_small"], "flow_iterations": iterations},
    ),
  ):
    lowered, init, batch = _pretrain(small, masking)
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    cell = {"state": init()}

    def run():
      cell["state"], metrics = compiled(cell["state"], batch)
      jax.block_until_ready(metrics)

    times[name] = acc.median_ms(run, 1, steps)
    rows.append(
      {
        "what": f"CPU step, dim 384 x 6, 16 x 112², batch 4: {name}",
        "ms": times[name],
        "compile_s": compile_s,
      }
    )
  video = jax.jit(model_video)(batch)
  base = mgmae.base_index(jax.random.key(0), small.batch, small.frames, "middle")
  model = raft_weights.load(paths["raft_small"])
  for name, fn, unrolled in (
    ("lk", mgmae.default_flow, None),
    (
      "raft_small",
      raft.flow_function("raft_small", paths["raft_small"], iterations),
      raft.RaftFlow(model, iterations=iterations, unroll=True),
    ),
  ):
    compiled = jax.jit(lambda v: mgmae.pair_flows(v, base, fn)).lower(video).compile()
    ms = acc.median_ms(lambda: jax.block_until_ready(compiled(video)), 1, steps)
    gflop = None
    if unrolled is not None:  # LK's loops would be counted once: no figure for it
      whole = jax.jit(lambda v: mgmae.pair_flows(v, base, unrolled)).lower(video).compile()
      gflop = whole.cost_analysis()["flops"] / 1e9
    rows.append(
      {
        "what": f"CPU: the {name} flow alone, 60 pairs at 112² (share of the mgmae step)",
        "ms": ms,
        "gflop": gflop,
        "share": ms / times[f"mgmae + {name}"],
      }
    )
  return rows


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--videos", type=int, default=8, help="0 skips the synthetic data set")
  parser.add_argument("--fps", type=float, default=4.0)
  parser.add_argument("--raft", default="small,large", help="RAFT columns ('' for none)")
  parser.add_argument("--raft-weights", default="", help="small=PATH,large=PATH (converted)")
  parser.add_argument("--raft-iterations", type=int, default=12)
  parser.add_argument("--cost", action="store_true", help="the cost rows instead of EPE")
  parser.add_argument("--flow-iterations", type=int, default=6, help="--cost: RAFT updates")
  parser.add_argument("--json")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  if args.cost:
    given = dict(item.split("=", 1) for item in filter(None, args.raft_weights.split(",")))
    rows = cost_rows({f"raft_{k}": v for k, v in given.items()}, args.flow_iterations)
    fmt = lambda v, spec: "" if v is None else format(v, spec)
    print("| what | GFLOP | ms | flow share |\n|---|---|---|---|")
    for r in rows:
      print(
        f"| {r['what']} | {fmt(r.get('gflop'), '.1f')} | {fmt(r.get('ms'), '.0f')} "
        f"| {fmt(r.get('share'), '.1%')} |"
      )
  else:
    raft = raft_columns(args.raft, args.raft_weights, args.raft_iterations)
    rows = square_table(args.size, args.seeds, raft, args.raft_iterations)
    if args.videos:
      rows += synthetic_table(args.size, args.videos, args.fps, raft, args.raft_iterations)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    print(
      "| case | ours | zero flow | Farnebäck |"
      + "".join(f" {c} |" for c in raft)
      + "\n|---|---|---|---|"
      + "---|" * len(raft)
    )
    for r in rows:
      print(
        f"| {r['case']} | {fmt(r['ours'])} | {fmt(r['zero'])} | {fmt(r['farneback'])} |"
        + "".join(f" {fmt(r[c])} |" for c in raft)
      )
    print(f"EPE in px; {args.seeds} seeds per square case")
  result = {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}
  print(f"{result['seconds']} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
