"""Does the in-memory H.264 re-encode give the same bytes every time? (the transcode's x264)

  python benchmarks/x264_determinism.py [--encodes 2000] [--sizes 48x64,240x320]

Encodes one clip (16 frames of a blocky noise texture panning 2 px/frame down and 4 px/frame
right, plus Gaussian noise; `--sizes` H×W) `--encodes` times in this process with
`motion_vectors.Transcoder`, at `X264_OPTIONS` with libx264's assembly:
- `auto`: what libx264 detects (AVX-512 on a CPU that has it), the options before the cap;
- `AVX2`, `AVX`, `SSE4.2`, `SSE2`: capped at that level (`x264-params` `asm=`);
- `C`: no assembly (`asm=0`);
- `capped`: `motion_vectors.encoder_options`, what the transcode uses (AVX2 on an AVX-512 CPU).
Prints per size and setting the number of distinct byte streams, how many encodes differ from
the most common one, and which settings give the same bytes. Levels this CPU lacks are skipped.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mgvm.datasets import motion_vectors as mv  # noqa: E402

LEVELS = ("auto", "AVX2", "AVX", "SSE4.2", "SSE2", "C", "capped")
_NUMPY_FEATURE = {"AVX2": "AVX2", "AVX": "AVX", "SSE4.2": "SSE42", "SSE2": "SSE2"}


def clip(height: int, width: int, frames: int = 16, seed: int = 0) -> np.ndarray:
  """uint8 [frames, height, width, 3]: a 4-px blocky noise texture panning, plus noise."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 255, (height // 4 + 16, width // 4 + 16, 3)).astype(np.float32)
  texture = np.kron(base, np.ones((4, 4, 1), np.float32))
  out = []
  for i in range(frames):
    moved = np.roll(texture, (2 * i, 4 * i), (0, 1))[:height, :width]
    out.append(np.clip(moved + rng.normal(0, 3, moved.shape), 0, 255))
  return np.asarray(out, np.uint8)


def options(level: str) -> dict:
  """`X264_OPTIONS` for one `LEVELS` entry."""
  if level == "auto":
    return dict(mv.X264_OPTIONS)
  if level == "capped":
    return mv.encoder_options(mv.X264_OPTIONS)
  out = dict(mv.X264_OPTIONS)
  out["x264-params"] += ":asm=" + ("0" if level == "C" else level)
  return out


def encoded_bytes(frames: np.ndarray, opts: dict) -> bytes:
  """The H.264 stream `Transcoder` makes of `frames` with libx264 `opts` (used as given)."""
  transcoder = mv.Transcoder(frames.shape[1], frames.shape[2], opts)
  transcoder.encoder.options = dict(opts)  # as given: no cap added
  packets = []
  decode = transcoder._decode

  def keep(stream):
    stream = list(stream)
    packets.extend(bytes(p) for p in stream)
    return decode(stream)

  transcoder._decode = keep
  for frame in frames:
    transcoder.encode(frame)
  transcoder.flush()
  return b"".join(packets)


def cpu_has(level: str) -> bool:
  """Whether this CPU runs `level` (levels NumPy cannot check are skipped)."""
  return level not in _NUMPY_FEATURE or bool(mv.cpu_feature(_NUMPY_FEATURE[level]))


def sizes(text: str) -> list[tuple[int, int]]:
  """ "48x64,240x320" → [(48, 64), (240, 320)]; an argparse error naming a bad entry."""
  out = []
  for entry in text.split(","):
    parts = entry.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise argparse.ArgumentTypeError(f"size {entry!r} is not HxW with positive integers")
    out.append((int(parts[0]), int(parts[1])))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--encodes", type=int, default=2000)
  parser.add_argument("--sizes", type=sizes, default="48x64,240x320", help="HxW, comma-separated")
  args = parser.parse_args(argv)
  if args.encodes < 1:
    parser.error(f"--encodes must be at least 1, got {args.encodes}")
  print(
    f"libx264 {mv.x264_version()}, AVX-512: {mv.has_avx512()}, capped options: "
    f"{mv.encoder_options(mv.X264_OPTIONS)['x264-params']}"
  )
  for h, w in args.sizes:
    frames = clip(h, w)
    n = args.encodes if h * w <= 64 * 64 else max(args.encodes // 20, 20)
    common = {}
    print(f"\n{h}×{w}, 16 frames, {n} encodes per setting")
    print("| setting | distinct streams | encodes differing from the most common | s |")
    print("|---|---|---|---|")
    for level in LEVELS:
      if not cpu_has(level):
        print(f"| {level} | skipped: not on this CPU | | |")
        continue
      opts = options(level)
      start = time.perf_counter()
      counts = collections.Counter(
        hashlib.md5(encoded_bytes(frames, opts)).hexdigest() for _ in range(n)
      )
      digest, most = counts.most_common(1)[0]
      common[level] = digest
      print(f"| {level} | {len(counts)} | {n - most} | {time.perf_counter() - start:.1f} |")
    groups = collections.defaultdict(list)
    for level, digest in common.items():
      groups[digest].append(level)
    print("same bytes (most common stream): " + "; ".join(" = ".join(g) for g in groups.values()))


if __name__ == "__main__":
  main()
