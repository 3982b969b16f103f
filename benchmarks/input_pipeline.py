"""Input throughput: the tf.data pipeline on prepared shards vs a naive per-clip PyAV loader.

  python benchmarks/input_pipeline.py [--videos 32] [--seconds 5] [--fps 30] [--height 240]
      [--width 320] [--clips 256] [--num-frames 16] [--frame-stride 4] [--image-size 224]
      [--naive-workers N] [--prepare-workers N] [--json OUT.json]

Both sides make the same fine-tuning clips from the same PyAV-written H.264 videos: T frames
every `frame-stride`-th frame from a random start, one random-resized crop (scale 0.08-1) and
flip per clip, ImageNet normalisation, float32 [T, S, S, 3].
- pipeline: `mgvm.data.prepare` once (timed separately: a one-off cost), then
  `pipeline.make_dataset(mode="finetune")`, which decodes only the JPEGs a clip uses.
- naive: what the reference repositories do with decord, with PyAV: for every clip open the
  video file, decode from the start up to the clip's last frame, keep the clip's frames, crop and
  resize each frame with PIL; `--naive-workers` processes (like a DataLoader's workers).
Both are timed side by side in one run after a warm-up; the ratio is what to compare across
machines, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MEAN = np.float32([0.485, 0.456, 0.406])
STD = np.float32([0.229, 0.224, 0.225])


def write_videos(
  root: str, count: int, seconds: float, fps: int, height: int, width: int
) -> list[str]:
  """`count` H.264 videos of textured shapes moving over a gradient (compressible, not static)."""
  import av

  paths = []
  yy, xx = np.mgrid[0:height, 0:width]
  rng = np.random.default_rng(0)
  texture = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
  for v in range(count):
    path = os.path.join(root, f"video{v:03d}.mp4")
    with av.open(path, "w") as container:
      stream = container.add_stream("libx264", rate=Fraction(fps))
      stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
      for i in range(int(seconds * fps)):
        img = np.empty((height, width, 3), np.uint8)
        img[..., 0] = (xx * 255 // width + 3 * i + 17 * v) % 256
        img[..., 1] = (yy * 255 // height) % 256
        img[..., 2] = 128
        cx, cy = (37 * v + 4 * i) % width, (23 * v + 2 * i) % height
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (height // 6) ** 2] = (250, 250, 40)
        img = img + texture
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in stream.encode(frame):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    paths.append(path)
  return paths


def _rrc_box(rng, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision RandomResizedCrop's box (10 attempts, else centre crop)."""
  for _ in range(10):
    area = height * width * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if 0 < w <= width and 0 < h <= height:
      return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
  return 0, 0, height, width


def naive_frames(
  path: str, rng, num_frames: int, stride: int
) -> tuple[list[int], list[np.ndarray]]:
  """Opens the file, draws a start, decodes from the beginning up to the clip's last frame."""
  import av

  with av.open(path) as container:
    stream = container.streams.video[0]
    n = stream.frames
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, max(0, n - span) + 1))
    wanted = [min(start + i * stride, n - 1) for i in range(num_frames)]
    frames, last = {}, wanted[-1]
    for index, frame in enumerate(container.decode(stream)):
      if index in wanted:
        frames[index] = frame.to_ndarray(format="rgb24")
      if index >= last:
        break
  return wanted, [frames[min(i, max(frames))] for i in wanted]


def naive_clip(args) -> np.ndarray:
  """One clip the reference way: `naive_frames`, then crop / resize / flip each frame with PIL."""
  from PIL import Image

  path, seed, num_frames, stride, size = args
  rng = np.random.default_rng(seed)
  _, images = naive_frames(path, rng, num_frames, stride)
  height, width = images[0].shape[:2]
  y, x, h, w = _rrc_box(rng, height, width)
  flip = rng.random() < 0.5
  out = np.empty((num_frames, size, size, 3), np.float32)
  for t, img in enumerate(images):
    pil = Image.fromarray(img).crop((x, y, x + w, y + h)).resize((size, size), Image.BILINEAR)
    if flip:
      pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    out[t] = (np.asarray(pil, np.float32) / 255.0 - MEAN) / STD
  return out


def time_naive(paths, *, clips, num_frames, stride, size, workers, warmup) -> float:
  """Clips per second of `naive_clip` over `workers` processes."""
  tasks = [(paths[i % len(paths)], i, num_frames, stride, size) for i in range(warmup + clips)]
  ctx = multiprocessing.get_context("forkserver")
  with ctx.Pool(workers) as pool:
    list(pool.imap(naive_clip, tasks[:warmup], chunksize=1))
    start = time.perf_counter()
    for _ in pool.imap(naive_clip, tasks[warmup:], chunksize=1):
      pass
    return clips / (time.perf_counter() - start)


def time_pipeline(pattern, *, clips, num_frames, stride, size, batch_size, warmup) -> float:
  """Clips per second of the tf.data pipeline (fine-tuning mode)."""
  from mgvm.data import pipeline

  ds = pipeline.make_dataset(
    pattern,
    mode="finetune",
    num_frames=num_frames,
    image_size=size,
    batch_size=batch_size,
    target_fps=None,
    frame_stride=stride,
    flip=True,
    shuffle_buffer=64,
  )
  it = pipeline.iterate_numpy(ds)
  for _ in range(max(1, warmup // batch_size)):
    next(it)
  batches = max(1, clips // batch_size)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - start)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--videos", type=int, default=32)
  p.add_argument("--seconds", type=float, default=5.0)
  p.add_argument("--fps", type=int, default=30)
  p.add_argument("--height", type=int, default=240)
  p.add_argument("--width", type=int, default=320)
  p.add_argument("--clips", type=int, default=256, help="timed clips per loader")
  p.add_argument("--warmup", type=int, default=32, help="untimed clips per loader first")
  p.add_argument("--num-frames", type=int, default=16)
  p.add_argument("--frame-stride", type=int, default=4)
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--naive-workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--prepare-workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--json", default="", help="also write the result here")
  a = p.parse_args(argv)
  import av
  import tensorflow as tf

  from mgvm.data import prepare

  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    paths = write_videos(tmp, a.videos, a.seconds, a.fps, a.height, a.width)
    with open(os.path.join(tmp, "train.csv"), "w") as f:
      f.writelines(f"{os.path.basename(path)} 0\n" for path in paths)
    t1 = time.perf_counter()
    prepare.prepare(
      os.path.join(tmp, "train.csv"),
      os.path.join(tmp, "out"),
      root=tmp,
      workers=a.prepare_workers,
      videos_per_shard=max(1, a.videos // 8),
      log=lambda _: None,
    )
    t2 = time.perf_counter()
    common = dict(
      clips=a.clips,
      num_frames=a.num_frames,
      stride=a.frame_stride,
      size=a.image_size,
      warmup=a.warmup,
    )
    pipe = time_pipeline(
      os.path.join(tmp, "out", "train-*.tfrecord"), batch_size=a.batch_size, **common
    )
    naive = time_naive(paths, workers=a.naive_workers, **common)
    shard_bytes = sum(
      os.path.getsize(os.path.join(tmp, "out", f))
      for f in os.listdir(os.path.join(tmp, "out"))
      if f.endswith(".tfrecord")
    )
    video_bytes = sum(os.path.getsize(p) for p in paths)
  result = {
    "pipeline_clips_per_s": round(pipe, 2),
    "naive_clips_per_s": round(naive, 2),
    "ratio": round(pipe / naive, 2),
    "prepare_s": round(t2 - t1, 1),
    "prepare_videos_per_s": round(a.videos / (t2 - t1), 2),
    "write_videos_s": round(t1 - t0, 1),
    "shard_mb": round(shard_bytes / 2**20, 1),
    "video_mb": round(video_bytes / 2**20, 1),
    "args": vars(a),
    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    "versions": {
      "tensorflow": tf.__version__,
      "av": av.__version__,
      "python": platform.python_version(),
    },
  }
  print(
    f"pipeline {pipe:.2f} clips/s, naive PyAV {naive:.2f} clips/s "
    f"({a.naive_workers} workers): ratio {pipe / naive:.2f}x; "
    f"prepare (one-off) {result['prepare_s']} s for {a.videos} videos"
  )
  print(json.dumps(result))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
