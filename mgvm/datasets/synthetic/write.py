"""Writing the synthetic set: JPEG records, shards, `dataset_info.json`; reuse when it is already there.

Each record's bytes depend only on (config, seed, split, index, motion block); shard boundaries
only on the split size and `videos_per_shard`. Imports TensorFlow only when records are written.

With `motion_block` > 0 every record also stores the codec motion field of its video
(`mgvm.datasets.motion_vectors`, docs/data.md "Motion in clips"): the rendered frames encoded to
H.264 in memory with `MOTION_X264_OPTIONS` and the decoder's vectors on `motion_block`-pixel
cells, what `prepare --motion-vectors` stores for a real video. The frames stay the renderer's.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import io
import json
import math
import os
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from mgvm.datasets import processes, shards
from mgvm.datasets.synthetic.config import (
  DEFAULT_SPLITS,
  VIDEOS_PER_SHARD,
  SyntheticConfig,
  identity_fields,
)
from mgvm.datasets.synthetic.render import Video, render_video
from mgvm.datasets.synthetic.scene import _check_seed_index, _split_code

INFO_FILE = "dataset_info.json"
VERSION = 1  # bump when rendering changes, so `ensure_dataset` regenerates
# The codec motion a synthetic set stores when asked (`sources.resolve(..., motion=True)`): 8-px
# cells, and libx264 at preset medium with every partition, so small frames get vectors on 8×8
# partitions too (on 32-px study videos, 62 % of the vectors are on partitions below 16 × 16,
# against 8 % at `X264_OPTIONS`' veryfast: docs/synthetic.md). One thread, no B-frames, one
# reference, libx264's assembly capped at AVX2 (`motion_vectors.encoder_options`): the bytes do
# not depend on the machine.
MOTION_BLOCK = 8
MOTION_X264_OPTIONS = {
  "preset": "medium",
  "crf": "18",
  "threads": "1",
  "x264-params": "keyint=250:min-keyint=250:scenecut=0:bframes=0:ref=1:partitions=all",
}


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
  """Per-frame JPEG (Pillow, 4:4:4 chroma) of uint8 [N, H, W, 3]."""
  from PIL import Image

  frames = np.asarray(frames, np.uint8)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be uint8 [N, H, W, 3], got shape {frames.shape}")
  image = Image.new("RGB", (frames.shape[2], frames.shape[1]))  # reused: faster than fromarray
  out = []
  for frame in frames:
    image.frombytes(frame.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=0)
    out.append(buf.getvalue())
  return out


def codec_motion(video: Video, block: int = MOTION_BLOCK) -> dict:
  """The codec motion field of the rendered frames (`MOTION_X264_OPTIONS`), as
  `mgvm.data.format.encode_example`'s `motion` argument."""
  from mgvm.datasets import motion_vectors

  return motion_vectors.codec_motion(
    video.frames, block=block, options=MOTION_X264_OPTIONS
  ).as_format()


def _compress(video: Video, jpeg_quality: int) -> Video:
  """`video` with `frames` replaced by a list of JPEG bytes (what a worker sends back)."""
  return dataclasses.replace(video, frames=encode_jpeg(video.frames, jpeg_quality), flow=None)


def _serialize(video: Video, height: int, width: int, motion: dict | None = None) -> bytes:
  from mgvm.data import format as fmt

  n = len(video.frames)
  return fmt.encode_example(
    video_id=video.id,
    fps=video.fps,
    jpeg_frames=video.frames,
    height=height,
    width=width,
    label=video.label,
    label_text=video.label_text,
    annotations={
      fmt.REGION_BBOX: video.actor_boxes.reshape(n, -1),
      fmt.REGION_LABEL: video.actor_labels,
      fmt.OBJECT_BBOX: video.object_boxes.reshape(n, -1),
      fmt.OBJECT_DISPLACEMENT: video.object_displacement.reshape(n, -1),
    },
    motion=motion,
  )


def encode_video(video: Video, *, jpeg_quality: int = 90, motion_block: int = 0) -> bytes:
  """The video as a serialised `SequenceExample` in `mgvm.data.format` (imports TensorFlow);
  `motion_block` > 0 adds its codec motion field on cells of that many pixels."""
  _, h, w, _ = video.frames.shape
  motion = codec_motion(video, motion_block) if motion_block else None
  return _serialize(_compress(video, jpeg_quality), h, w, motion)


def _render_compressed(task) -> tuple[Video, dict | None]:
  """Worker: renders and JPEG-encodes one video, plus its codec motion field when the task's
  motion block is > 0 (no TensorFlow in the workers)."""
  config, seed, split, index, motion_block = task
  video = render_video(config, seed, split, index)
  motion = codec_motion(video, motion_block) if motion_block else None
  return _compress(video, config.jpeg_quality), motion


def _check_motion_block(motion_block) -> int:
  if int(motion_block) != motion_block or motion_block < 0:
    raise ValueError(f"motion_block must be an int >= 0 (0: no motion field), got {motion_block!r}")
  return int(motion_block)


def check_splits(splits: Mapping[str, int]) -> dict[str, int]:
  """`splits` as {name: count}; ValueError naming a bad name or count."""
  if not splits:
    raise ValueError("splits is empty")
  out = {}
  for name, count in splits.items():
    _split_code(name)
    if int(count) != count or count < 0:
      raise ValueError(f"split {name!r}: count must be an int >= 0, got {count!r}")
    out[name] = int(count)
  return out


def _fps_histogram(fps: Sequence[float]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for f in sorted(fps):
    lo = int(f // 10) * 10
    key = f"{lo}-{lo + 10}"
    counts[key] = counts.get(key, 0) + 1
  return counts


def _identity(
  config: SyntheticConfig, splits: Mapping[str, int], seed: int, motion_block: int = 0
) -> dict:
  identity = {
    "version": VERSION,
    "config": identity_fields(config.to_dict()),
    "seed": int(seed),
    "counts": dict(sorted(splits.items())),
  }
  if motion_block:  # sets written without a field keep their identity
    from mgvm.datasets import motion_vectors

    identity["motion"] = {
      "block": motion_block,
      "x264": MOTION_X264_OPTIONS,
      "x264_cpu_cap": motion_vectors.X264_CPU_CAP,
    }
  return identity


def write_dataset(
  out_dir: str,
  config: SyntheticConfig | None = None,
  *,
  splits: Mapping[str, int] | None = None,
  seed: int = 0,
  videos_per_shard: int = VIDEOS_PER_SHARD,
  workers: int | None = None,
  motion_block: int = 0,
) -> dict:
  """Renders and writes the splits as TFRecord shards plus `dataset_info.json`; returns the info.

  Each record's bytes depend only on (config, seed, split, index, motion block); shard boundaries
  only on the split size and `videos_per_shard`. `workers` processes render in parallel (default:
  all CPUs). `motion_block` > 0: every record also stores its codec motion field (module doc).
  """
  config = config or SyntheticConfig()
  splits = check_splits(DEFAULT_SPLITS if splits is None else splits)
  motion_block = _check_motion_block(motion_block)
  _check_seed_index(seed, 0)
  if int(videos_per_shard) != videos_per_shard or videos_per_shard < 1:
    raise ValueError(f"videos_per_shard must be an int >= 1, got {videos_per_shard!r}")
  start = time.perf_counter()
  os.makedirs(out_dir, exist_ok=True)
  info_path = os.path.join(out_dir, INFO_FILE)
  if os.path.exists(info_path):
    os.remove(info_path)  # no info while the shards are incomplete
  shards.remove_partial(out_dir)  # left by an interrupted run
  tasks = [(config, seed, split, i, motion_block) for split, n in splits.items() for i in range(n)]
  workers = (os.cpu_count() or 1) if workers is None else int(workers)
  pool = None
  if workers > 1 and len(tasks) > 4:
    pool = processes.pool(workers)  # workers need numpy, Pillow (and PyAV for motion) only
    results = pool.imap(
      _render_compressed, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers)))
    )
  else:
    results = map(_render_compressed, tasks)
  info = {
    "name": "mgvm_synthetic",
    **_identity(config, splits, seed, motion_block),
    "classes": list(config.classes),
    "splits": {},
  }
  all_fps = []
  try:
    for split, n in splits.items():
      num_shards = max(1, math.ceil(n / videos_per_shard)) if n else 0
      bounds = [round(k * n / num_shards) for k in range(num_shards + 1)] if n else [0]
      files, fps, frames, counts = [], [], 0, [0] * len(config.classes)
      for shard in range(num_shards):
        name = shards.shard_name(split, shard, num_shards)
        with shards.write_shard(out_dir, name) as writer:
          for _ in range(bounds[shard], bounds[shard + 1]):
            video, motion = next(results)
            writer.write(_serialize(video, config.image_size, config.image_size, motion))
            frames += len(video.frames)
            fps.append(video.fps)
            counts[video.label] += 1
        files.append(name)
      shards.remove_stale(out_dir, split, files)
      info["splits"][split] = {
        "num_videos": n,
        "num_frames": frames,
        "files": files,
        "label_counts": counts,
        "fps_histogram": _fps_histogram(fps),
      }
      all_fps += fps
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
  info["fps_histogram"] = _fps_histogram(all_fps)
  info["seconds"] = round(time.perf_counter() - start, 3)
  shards.write_json(info_path, info)
  return info


def read_info(out_dir: str) -> dict | None:
  """The stored `dataset_info.json`, or None when there is none."""
  path = os.path.join(out_dir, INFO_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def ensure_dataset(
  out_dir: str,
  config: SyntheticConfig | None = None,
  *,
  splits: Mapping[str, int] | None = None,
  seed: int = 0,
  log: Callable[[str], object] | None = print,
  workers: int | None = None,
  videos_per_shard: int = VIDEOS_PER_SHARD,
  motion_block: int = 0,
) -> dict:
  """Returns the stored info when `out_dir` holds this exact data set, else writes it first.

  Several processes of one machine may ask at once (e.g. study processes sharing the cores):
  they take turns on `<out_dir>.lock` (an OS file lock, let go when its process ends), so one
  writes and the others reuse what it wrote."""
  config = config or SyntheticConfig()
  splits = check_splits(DEFAULT_SPLITS if splits is None else splits)
  motion_block = _check_motion_block(motion_block)
  log = log or (lambda _: None)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  with open(os.path.abspath(out_dir) + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # waits for another process writing this set
    return _ensure(out_dir, config, splits, seed, log, workers, videos_per_shard, motion_block)


def _ensure(out_dir, config, splits, seed, log, workers, videos_per_shard, motion_block) -> dict:
  info = read_info(out_dir)
  want = _identity(config, splits, seed, motion_block)
  if (
    info is not None
    and {k: info.get(k) for k in want} == want
    and ("motion" in want or "motion" not in info)
    and all(
      os.path.exists(os.path.join(out_dir, f)) for s in info["splits"].values() for f in s["files"]
    )
  ):
    log(f"synthetic data: reusing {out_dir} ({_summary(info)})")
    return info
  log(f"synthetic data: generating {sum(splits.values())} videos in {out_dir}")
  info = write_dataset(
    out_dir,
    config,
    splits=splits,
    seed=seed,
    workers=workers,
    videos_per_shard=videos_per_shard,
    motion_block=motion_block,
  )
  log(f"synthetic data: wrote {_summary(info)} in {info['seconds']:.1f} s")
  return info


def split_files(out_dir: str, split: str) -> list[str]:
  """Shard paths of `split`, from `dataset_info.json` when present, else by file name."""
  info = read_info(out_dir)
  if info is not None:
    if split not in info["splits"]:
      raise KeyError(f"no split {split!r} in {out_dir}; splits: {sorted(info['splits'])}")
    files = [os.path.join(out_dir, f) for f in info["splits"][split]["files"]]
  else:
    files = shards.split_shards(out_dir, split)
  if not files:
    raise FileNotFoundError(f"no shards for split {split!r} in {out_dir}")
  return files


def _summary(info: dict) -> str:
  parts = [f"{k} {v['num_videos']}" for k, v in info["splits"].items()]
  frames = sum(v["num_frames"] for v in info["splits"].values())
  return f"{', '.join(parts)} videos, {frames} frames"


def main(argv: Sequence[str] | None = None) -> dict:
  """CLI: `python -m mgvm.datasets.synthetic --out DIR [--train N ...]`."""
  d = SyntheticConfig()
  p = argparse.ArgumentParser(
    prog="python -m mgvm.datasets.synthetic", description=__doc__.split("\n")[0]
  )
  p.add_argument("--out", required=True, help="output directory")
  for split, n in DEFAULT_SPLITS.items():
    p.add_argument(f"--{split}", type=int, default=n, help=f"videos in {split} ({n})")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
  p.add_argument("--videos-per-shard", type=int, default=VIDEOS_PER_SHARD)
  for name in (
    "image_size",
    "min_seconds",
    "max_seconds",
    "min_fps",
    "max_fps",
    "min_actors",
    "max_actors",
    "min_distractors",
    "max_distractors",
    "jpeg_quality",
  ):
    value = getattr(d, name)
    p.add_argument(
      "--" + name.replace("_", "-"), type=type(value), default=value, help=f"default {value}"
    )
  p.add_argument("--camera-pan", action="store_true", help="pan the background")
  p.add_argument(
    "--motion-block",
    type=int,
    default=0,
    help=f"store the codec motion field on cells of this many px (0: none; {MOTION_BLOCK} is "
    "what configs whose masker reads codec motion use)",
  )
  args = p.parse_args(argv)
  config = SyntheticConfig(
    image_size=args.image_size,
    min_seconds=args.min_seconds,
    max_seconds=args.max_seconds,
    min_fps=args.min_fps,
    max_fps=args.max_fps,
    min_actors=args.min_actors,
    max_actors=args.max_actors,
    min_distractors=args.min_distractors,
    max_distractors=args.max_distractors,
    camera_pan=args.camera_pan,
    jpeg_quality=args.jpeg_quality,
  )
  splits = {s: getattr(args, s) for s in DEFAULT_SPLITS}
  info = write_dataset(
    args.out,
    config,
    splits=splits,
    seed=args.seed,
    videos_per_shard=args.videos_per_shard,
    workers=args.workers,
    motion_block=args.motion_block,
  )
  print(f"wrote {_summary(info)} to {args.out} in {info['seconds']:.1f} s")
  return info


if __name__ == "__main__":
  main()
