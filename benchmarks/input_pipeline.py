"""Input throughput against the JPEG-decode limit: mgvm's tf.data pipeline, decord2 + a torch
DataLoader and a naive PyAV loader, on the same videos and the same cores in one run.

  python benchmarks/input_pipeline.py [--videos 32] [--seconds 5] [--fps 30] [--height 240]
      [--width 320] [--clips 256] [--warmup 32] [--num-frames 16] [--frame-stride 4]
      [--image-size 224] [--batch-size 8] [--naive-workers N] [--prepare-workers N] [--cores N]
      [--only limit,finetune,pretrain,pretrain2,decord,naive] [--json OUT.json]

Every loader makes clips of T frames, every `frame-stride`-th frame from a random start, of the
same PyAV-written H.264 videos (or of their `mgvm.datasets.prepare` shards; preparing is timed apart,
a one-off cost). The loaders run one after another on the same cores, each timed over `--clips`
clips after `--warmup` untimed ones:
- limit: the decode limit. The same T frames of the same shards through `tf.io.decode_jpeg` and
  nothing else: a tf.data map with parallel calls that parses the record
  (`format.parse_example`), gathers the clip's JPEGs and decodes them (no crop, no resize).
- finetune: `pipeline.make_dataset(mode="finetune")`: random resized crop (scale 0.08-1), flip.
- pretrain, pretrain2: `mode="pretrain"` (multi-scale crop) with `num_sample` 1 and 2 (repeated
  sampling: one decoded video gives 2 clips); "n/a" where the pipeline refuses the num_sample.
- decord: the reference repositories' loader: a map-style Dataset whose `__getitem__` opens the
  file with `decord.VideoReader(num_threads=1)`, `get_batch`es the clip's frames, then does one
  random resized crop (scale 0.08-1) + flip per clip with PIL and ImageNet normalisation (float32);
  `torch.utils.data.DataLoader(num_workers=--naive-workers, batch_size=--batch-size)`. Skipped,
  with the reason printed, where torch or decord (`pip install decord2`) is missing.
- naive: the same augmentation after PyAV decodes each file from its start up to the clip's
  last frame, in `--naive-workers` processes.
The mgvm loaders are timed as `next()` on `pipeline.numpy_batches` batches whatever their dtype
(uint8 where normalisation runs on the accelerator); each row prints the dtype and bytes per clip
it got. Each rate is shown per core (`--cores`, default os.cpu_count()), as a fraction of the
decode limit, and against what one H200 consumes per core of its host (`NEED_PER_CORE`). Ratios
carry across machines; absolute rates do not.
"""

from __future__ import annotations

import argparse
import gc
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

from mgvm.data import device_ops  # noqa: E402  (TF-free: the one copy of the ImageNet statistics)

MEAN = np.float32(device_ops.MEAN)
STD = np.float32(device_ops.STD)

LOADERS = ("limit", "finetune", "pretrain", "pretrain2", "decord", "naive")
LABELS = {
  "limit": "decode limit (tf decode_jpeg only)",
  "finetune": "mgvm finetune",
  "pretrain": "mgvm pretrain num_sample=1",
  "pretrain2": "mgvm pretrain num_sample=2",
  "decord": "decord2 + torch DataLoader",
  "naive": "naive PyAV",
}
# Issue #13's arithmetic: one H200 in bf16 at 35-50 % MFU, fed by its host's 16 cores, consumes
# per core (clips/s) this many ViT-B 16x224 clips: fine-tuning, and MAE pre-training (mask 0.9).
H200_CORES = 16
NEED_PER_CORE = {"finetune": (20.0, 29.0), "pretrain": (107.0, 153.0)}
TASK = {"limit": "finetune", "finetune": "finetune", "decord": "finetune", "naive": "finetune"}
TASK.update(pretrain="pretrain", pretrain2="pretrain")


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


def _clip_indices(rng, n: int, num_frames: int, stride: int) -> list[int]:
  """`num_frames` indices `stride` apart from a random start (the last frame repeats if short)."""
  span = (num_frames - 1) * stride + 1
  start = int(rng.integers(0, max(0, n - span) + 1))
  return [min(start + i * stride, n - 1) for i in range(num_frames)]


def augment_clip(images, rng, size: int) -> np.ndarray:
  """One random resized crop (scale 0.08-1) and flip per clip, per frame with PIL, normalised:
  float32 [T, size, size, 3] (what the reference repositories' transforms make)."""
  from PIL import Image

  height, width = images[0].shape[:2]
  y, x, h, w = _rrc_box(rng, height, width)
  flip = rng.random() < 0.5
  out = np.empty((len(images), size, size, 3), np.float32)
  for t, img in enumerate(images):
    pil = Image.fromarray(img).crop((x, y, x + w, y + h)).resize((size, size), Image.BILINEAR)
    if flip:
      pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    out[t] = (np.asarray(pil, np.float32) / 255.0 - MEAN) / STD
  return out


def naive_frames(
  path: str, rng, num_frames: int, stride: int
) -> tuple[list[int], list[np.ndarray]]:
  """Opens the file, draws a start, decodes from the beginning up to the clip's last frame."""
  import av

  with av.open(path) as container:
    stream = container.streams.video[0]
    wanted = _clip_indices(rng, stream.frames, num_frames, stride)
    frames, last = {}, wanted[-1]
    for index, frame in enumerate(container.decode(stream)):
      if index in wanted:
        frames[index] = frame.to_ndarray(format="rgb24")
      if index >= last:
        break
  return wanted, [frames[min(i, max(frames))] for i in wanted]


def naive_clip(args) -> np.ndarray:
  """One clip the naive way: `naive_frames`, then `augment_clip`."""
  path, seed, num_frames, stride, size = args
  rng = np.random.default_rng(seed)
  _, images = naive_frames(path, rng, num_frames, stride)
  return augment_clip(images, rng, size)


def decord_frames(path: str, rng, num_frames: int, stride: int) -> tuple[list[int], np.ndarray]:
  """VideoMAE's way: `decord.VideoReader(num_threads=1)`, then `get_batch` of the clip's frames
  (decord seeks to the keyframe before the first one)."""
  import decord

  reader = decord.VideoReader(path, num_threads=1)
  wanted = _clip_indices(rng, len(reader), num_frames, stride)
  return wanted, reader.get_batch(wanted).asnumpy()


class DecordClips:
  """A map-style Dataset for `torch.utils.data.DataLoader`: item i is one augmented clip
  (`decord_frames` + `augment_clip`, float32 [T, S, S, 3]) of video i mod the video count."""

  def __init__(self, paths, length: int, num_frames: int, stride: int, size: int, seed: int = 0):
    self.paths, self.length, self.seed = list(paths), length, seed
    self.num_frames, self.stride, self.size = num_frames, stride, size

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, i: int) -> np.ndarray:
    rng = np.random.default_rng((self.seed, i))
    path = self.paths[i % len(self.paths)]
    _, images = decord_frames(path, rng, self.num_frames, self.stride)
    return augment_clip(list(images), rng, self.size)


def _video_info(dtype, nbytes_per_clip: int, shape) -> dict:
  return {
    "video_dtype": str(dtype).replace("torch.", ""),
    "video_bytes_per_clip": int(nbytes_per_clip),
    "video_shape": [int(d) for d in shape],
  }


def _time_batches(it, batch_size: int, clips: int, warmup: int, video):
  """(clips/s over `clips // batch_size` batches after `warmup // batch_size`, a video array)."""
  for _ in range(max(1, warmup // batch_size)):
    next(it)
  batches = max(1, clips // batch_size)
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  return batches * batch_size / (time.perf_counter() - start), video(batch)


def time_pipeline(
  pattern, *, clips, num_frames, stride, size, batch_size, warmup, mode="finetune", num_sample=1
) -> dict:
  """Clips per second of `pipeline.make_dataset` (`mode`, `num_sample`), and its video."""
  from mgvm.data import pipeline

  kwargs = dict(flip=True) if mode == "finetune" else {}
  ds = pipeline.make_dataset(
    pattern,
    mode=mode,
    num_frames=num_frames,
    image_size=size,
    batch_size=batch_size,
    target_fps=None,
    frame_stride=stride,
    shuffle_buffer=64,
    num_sample=num_sample,
    **kwargs,
  )
  it = pipeline.numpy_batches(ds)
  try:
    rate, video = _time_batches(it, batch_size, clips, warmup, lambda b: b["video"])
  finally:
    del it, ds
    gc.collect()  # stops the iterator's prefetching before the next loader
  return {"clips_per_s": rate, **_video_info(video.dtype, video[0].nbytes, video.shape[1:])}


def decode_limit_dataset(files, *, num_frames: int, stride: int, batch_size: int, seed: int = 0):
  """uint8 [B, T, H, W, 3] batches: T frames `stride` apart from a random start of each record,
  decoded with `tf.io.decode_jpeg` and nothing else (files interleaved as the pipeline does)."""
  import tensorflow as tf

  from mgvm.data import format as fmt

  span = (num_frames - 1) * stride + 1
  ds = tf.data.Dataset.from_tensor_slices(list(files)).repeat()
  ds = ds.interleave(
    tf.data.TFRecordDataset,
    cycle_length=min(len(files), 8),
    block_length=1,
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )

  def clip(position, serialized):
    ex = fmt.parse_example(serialized)
    n = ex["num_frames"]
    start = tf.random.stateless_uniform(
      [],
      tf.stack([tf.constant(seed, tf.int64), position]),
      0,
      tf.maximum(n - span, 0) + 1,
      tf.int32,
    )
    jpegs = tf.gather(ex["frames"], tf.minimum(start + tf.range(num_frames) * stride, n - 1))
    return tf.stack([tf.io.decode_jpeg(jpegs[t], channels=3) for t in range(num_frames)])

  ds = ds.enumerate().map(clip, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def time_decode_limit(files, *, clips, num_frames, stride, batch_size, warmup, **_) -> dict:
  """Clips per second of `decode_limit_dataset` (its video: the whole decoded frames)."""
  ds = decode_limit_dataset(files, num_frames=num_frames, stride=stride, batch_size=batch_size)
  it = ds.as_numpy_iterator()
  try:
    rate, video = _time_batches(it, batch_size, clips, warmup, lambda b: b)
  finally:
    del it, ds
    gc.collect()
  return {"clips_per_s": rate, **_video_info(video.dtype, video[0].nbytes, video.shape[1:])}


def time_decord(paths, *, clips, num_frames, stride, size, batch_size, warmup, workers) -> dict:
  """Clips per second of `DecordClips` through a torch DataLoader with `workers` workers."""
  from torch.utils.data import DataLoader

  warm, timed = max(1, warmup // batch_size), max(1, clips // batch_size)
  data = DecordClips(paths, (warm + timed) * batch_size, num_frames, stride, size)
  loader = DataLoader(
    data,
    batch_size=batch_size,
    num_workers=workers,
    drop_last=True,
    multiprocessing_context="forkserver" if workers else None,  # no fork of a TF process
  )
  it = iter(loader)
  try:
    rate, video = _time_batches(it, batch_size, clips, warmup, lambda b: b)
  finally:
    del it, loader
    gc.collect()
  return {
    "clips_per_s": rate,
    **_video_info(video.dtype, video[0].element_size() * video[0].numel(), video.shape[1:]),
  }


def time_naive(paths, *, clips, num_frames, stride, size, workers, warmup, **_) -> dict:
  """Clips per second of `naive_clip` over `workers` processes."""
  tasks = [(paths[i % len(paths)], i, num_frames, stride, size) for i in range(warmup + clips)]
  ctx = multiprocessing.get_context("forkserver")
  with ctx.Pool(workers) as pool:
    list(pool.imap(naive_clip, tasks[:warmup], chunksize=1))
    start = time.perf_counter()
    clip = None
    for clip in pool.imap(naive_clip, tasks[warmup:], chunksize=1):  # noqa: B007 (the last one)
      pass
    rate = clips / (time.perf_counter() - start)
  return {"clips_per_s": rate, **_video_info(clip.dtype, clip.nbytes, clip.shape)}


def _missing_for_decord() -> str:
  """Why the decord loader cannot run here ("" when it can)."""
  for module, package in (("torch", "torch"), ("decord", "decord2")):
    try:
      __import__(module)
    except ImportError as e:
      return f"{module} is not installed (pip install {package}): {e}"
  return ""


def _range(lo_hi, digits=2) -> str:
  lo, hi = lo_hi
  return f"{lo:.{digits}f}-{hi:.{digits}f}" if digits else f"{lo:g}-{hi:g}"


def _report(rows: dict, cores: int) -> None:
  """Completes each measured row: per core, x decode limit, the H200 need and its fraction."""
  limit = rows.get("limit", {}).get("clips_per_s")
  for name, row in rows.items():
    if "clips_per_s" not in row:
      continue
    need = NEED_PER_CORE[TASK[name]]
    per_core = row["clips_per_s"] / cores
    row.update(
      per_core=round(per_core, 3),
      vs_limit=round(row["clips_per_s"] / limit, 3) if limit else None,
      task=TASK[name],
      needed_per_core=list(need),
      h200_fraction=[round(per_core / need[1], 3), round(per_core / need[0], 3)],
    )
    row["clips_per_s"] = round(row["clips_per_s"], 2)


def _print_table(rows: dict, a) -> list[str]:
  lines = [
    f"{'loader':<42} {'clips/s':>8} {'per core':>9} {'x limit':>8}  {'video per clip':<28}"
    f" {'needed/core':>11} {'of one H200':>12}"
  ]
  for name, row in rows.items():
    label = LABELS[name]
    if name in ("decord", "naive"):
      label += f" ({a.naive_workers} workers)"
    if "clips_per_s" not in row:
      lines.append(f"{label:<42} {row['skipped']}")
      continue
    shape = "x".join(map(str, row["video_shape"]))
    size = row["video_bytes_per_clip"]
    size = f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
    video = f"{row['video_dtype']} {shape} {size}"
    limit = "-" if row["vs_limit"] is None else f"{row['vs_limit']:.2f}"
    lines.append(
      f"{label:<42} {row['clips_per_s']:>8.2f} {row['per_core']:>9.2f} {limit:>8}  {video:<28}"
      f" {_range(row['needed_per_core'], 0):>11} {_range(row['h200_fraction']):>12}"
    )
  return lines


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
  p.add_argument(
    "--naive-workers",
    type=int,
    default=os.cpu_count() or 1,
    help="processes of the naive loader, DataLoader workers of the decord one",
  )
  p.add_argument("--prepare-workers", type=int, default=os.cpu_count() or 1)
  p.add_argument(
    "--cores", type=int, default=os.cpu_count() or 1, help="divides the per-core rates"
  )
  p.add_argument("--only", default=",".join(LOADERS), help=f"comma list of {', '.join(LOADERS)}")
  p.add_argument("--json", default="", help="also write the result here")
  a = p.parse_args(argv)
  only = [name.strip() for name in a.only.split(",") if name.strip()]
  unknown = sorted(set(only) - set(LOADERS))
  if unknown or not only:
    p.error(f"--only: unknown loaders {unknown}; choose from {', '.join(LOADERS)}")
  if a.cores < 1 or a.batch_size < 1:
    p.error("--cores and --batch-size must be >= 1")
  import av
  import tensorflow as tf

  from mgvm.datasets import prepare

  rows: dict[str, dict] = {}
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    paths = write_videos(tmp, a.videos, a.seconds, a.fps, a.height, a.width)
    with open(os.path.join(tmp, "train.csv"), "w") as f:
      f.writelines(f"{os.path.basename(path)} 0\n" for path in paths)
    t1 = time.perf_counter()
    out = os.path.join(tmp, "out")
    summary = prepare.prepare(
      os.path.join(tmp, "train.csv"),
      out,
      root=tmp,
      workers=a.prepare_workers,
      videos_per_shard=max(1, a.videos // 8),
      log=lambda _: None,
    )
    t2 = time.perf_counter()
    shards = [os.path.join(out, name) for name in summary["shards"]]
    common = dict(
      clips=a.clips,
      num_frames=a.num_frames,
      stride=a.frame_stride,
      size=a.image_size,
      warmup=a.warmup,
      batch_size=a.batch_size,
    )
    pattern = os.path.join(out, "train-*.tfrecord")
    for name in [n for n in LOADERS if n in only]:
      if name == "limit":
        rows[name] = time_decode_limit(shards, **common)
      elif name == "finetune":
        rows[name] = time_pipeline(pattern, mode="finetune", **common)
      elif name in ("pretrain", "pretrain2"):
        num_sample = 2 if name == "pretrain2" else 1
        try:
          rows[name] = time_pipeline(pattern, mode="pretrain", num_sample=num_sample, **common)
        except Exception as e:  # the pipeline may not take num_sample in pre-training
          if num_sample == 1:
            raise
          rows[name] = {"skipped": f"n/a: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
      elif name == "decord":
        missing = _missing_for_decord()
        rows[name] = (
          {"skipped": f"skipped: {missing}"}
          if missing
          else time_decord(paths, workers=a.naive_workers, **common)
        )
      else:
        rows[name] = time_naive(paths, workers=a.naive_workers, **common)
    shard_bytes = sum(os.path.getsize(path) for path in shards)
    video_bytes = sum(os.path.getsize(path) for path in paths)
  _report(rows, a.cores)

  def rate(name):
    return rows.get(name, {}).get("clips_per_s")

  def ratio(x, y):
    return round(rate(x) / rate(y), 2) if rate(x) and rate(y) else None

  result = {
    "loaders": rows,
    "mgvm_over_decord": ratio("finetune", "decord"),
    "mgvm_over_naive": ratio("finetune", "naive"),
    "pipeline_clips_per_s": rate("finetune"),
    "naive_clips_per_s": rate("naive"),
    "ratio": ratio("finetune", "naive"),
    "cores": a.cores,
    "h200": {
      "host_cores": H200_CORES,
      "needed_per_core": {k: list(v) for k, v in NEED_PER_CORE.items()},
    },
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
      **{m: v for m in ("torch", "decord") if (v := _version_of(m))},
    },
  }
  lines = [
    f"input pipeline: {a.videos} videos x {a.seconds:g} s ({a.width}x{a.height}, {a.fps} fps, "
    f"H.264); clips of {a.num_frames} frames every {a.frame_stride}th, {a.image_size}^2, batch "
    f"{a.batch_size}; {a.clips} clips timed per loader after {a.warmup}; per core = / {a.cores} "
    f"cores ({result['machine']})",
    *_print_table(rows, a),
  ]
  for x, y in (("finetune", "decord"), ("finetune", "naive"), ("decord", "naive")):
    if ratio(x, y):
      lines.append(f"{LABELS[x]} / {LABELS[y]}: {ratio(x, y):.2f}x")
  if "clips_per_s" in rows.get("limit", {}):
    per_core = rows["limit"]["per_core"]
    need = NEED_PER_CORE["pretrain"]
    lines.append(
      f"decode limit against pre-training ({_range(need, 0)} clips/s per core): "
      f"{_range((per_core / need[1], per_core / need[0]))} of one H200"
    )
  lines += [
    f"needed/core: what one H200 (bf16, 35-50 % MFU; its host has {H200_CORES} cores) consumes "
    f"per host core: ViT-B 16x224 fine-tuning {_range(NEED_PER_CORE['finetune'], 0)} clips/s, "
    f"ViT-B MAE pre-training (mask 0.9) {_range(NEED_PER_CORE['pretrain'], 0)}; of one H200 = "
    f"per core / needed per core (the share of its demand that {H200_CORES} such cores cover)",
    f"prepare (one-off): {result['prepare_s']} s for {a.videos} videos "
    f"({result['prepare_videos_per_s']} videos/s); shards {result['shard_mb']} MB vs videos "
    f"{result['video_mb']} MB",
  ]
  print("\n".join(lines))
  print(json.dumps(result))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


def _version_of(module: str) -> str:
  try:
    return str(__import__(module).__version__)
  except Exception:  # not installed, or no version
    return ""


if __name__ == "__main__":
  main()
