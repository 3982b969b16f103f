"""Flow end-point error (EPE) on synthetic pairs: ours (`mgvm.flow`) vs zero flow vs Farnebäck.

  python benchmarks/flow_epe.py [--size 64] [--seeds 4] [--videos 8] [--fps 4] [--json OUT.json]

1. Translating square: a random-texture square (`square` px) moves by a known displacement over
   a textured or smooth background; EPE over the square's interior (≥ 3 px inside its edges in
   frame a). Textures are sums of random plane waves, evaluated exactly at sub-pixel shifts.
2. The synthetic motion data set (`mgvm.datasets.synthetic`, dense ground-truth flow from
   `with_flow=True`): EPE over all pixels and over the objects' boxes, consecutive frames of
   `--videos` test videos rendered at `--fps` (4: 0.8-1.6 px per frame; the native 10-60 fps
   move objects by < 0.7 px), translating classes only (move_*: one displacement per object),
   no distractors.
Farnebäck is OpenCV's (`cv2.calcOpticalFlowFarneback`, levels 3, window 15, 3 iterations,
poly_n 5, σ 1.2) on uint8 grey, when `cv2` imports; its flow has our convention.
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


@functools.lru_cache(maxsize=None)
def _ours(**options):
  import jax

  from mgvm import flow

  return jax.jit(functools.partial(flow.estimate, **options))


def ours(frames_a: np.ndarray, frames_b: np.ndarray, **options) -> np.ndarray:
  """mgvm.flow.estimate on numpy batches [B, H, W, 3] → [B, H, W, 2]."""
  return np.asarray(_ours(**options)(frames_a, frames_b))


def square_table(size: int, seeds: int, **options) -> list[dict]:
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
      }
    )
  return rows


def synthetic_table(size: int, videos: int, fps: float, **options) -> list[dict]:
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
      }
    )
  rows[-1]["pairs"] = len(a)
  return rows


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--videos", type=int, default=8, help="0 skips the synthetic data set")
  parser.add_argument("--fps", type=float, default=4.0)
  parser.add_argument("--json")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  rows = square_table(args.size, args.seeds)
  if args.videos:
    rows += synthetic_table(args.size, args.videos, args.fps)
  fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
  print("| case | ours | zero flow | Farnebäck |\n|---|---|---|---|")
  for r in rows:
    print(f"| {r['case']} | {fmt(r['ours'])} | {fmt(r['zero'])} | {fmt(r['farneback'])} |")
  result = {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}
  print(f"EPE in px; {args.seeds} seeds per square case; {result['seconds']} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
