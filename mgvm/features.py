"""Encoder features of videos, window by window, from any checkpoint: python -m mgvm.features.

  python -m mgvm.features --checkpoint CKPT --videos LIST_OR_DIR --out DIR
      [--fps F | --stride S] [--window T] [--hop H] [--pool mean|tokens|none]
      [--batch-size B] [--image-size S] [--num-frames T] [--num-heads H] [--no-progress]

`--checkpoint`: an mgvm workdir, an official `.pth` or a Hugging Face directory, pre-training
or classifier (`mgvm.weights.checkpoints.load_model`; a `.pth` does not record its clip: give
`--num-frames` / `--image-size` for a model not trained on 16 x 224, which also run any model
on another clip, its positions resized). `--videos`: a list file (one path per
line, relative to the list's folder; blank and `#` lines skipped) or a folder of video files
(.mp4 .avi .mkv .webm .mov, not recursive).

Each video is read on its constant-rate frames (`mgvm.datasets.decode`), sampled at `--fps`
per second or every `--stride`-th frame (default: the checkpoint's training setting, else every
4th) and cut into windows of T sampled frames (default the model's clip length) starting at
sampled frame 0, H, 2H, ... (default H = T, no overlap) while start + T <= the number of
sampled frames; the frames after the last full window are not used. A video shorter than one
window gives one window whose missing frames repeat its last frame (`"padded": true`). Each
frame is the model's single evaluation view (short side to the image size, centre crop,
`mgvm.data.video_ops.resize_center_crop`, rounded to uint8 as eval.py's pipeline does) and
normalized with the checkpoint's statistics.

`--pool`: `mean` [windows, D] (a classifier's `fc_norm` of the mean token, what feeds its head;
a pre-training encoder's mean token), `tokens` [windows, T', h, w, D] (the token map; these
models have no CLS token) or `none` [windows, N, D] (the tokens in (t, h, w) order).

Writes `DIR/<video stem>.npy` (float32; a repeated stem gets `.1`, `.2`, ...) per video and
`DIR/index.json`: per video its path, output file, shape, source fps, the sampling used and,
per window, the timestamps (s) of its first and last frame and of every frame; plus the
skipped files (unreadable videos never stop the run: counted by reason and listed, also on
stderr). Videos are decoded once, front to back, holding at most T converted frames each; the
`.npy` is written as the windows are computed. Windows of all videos are batched together over
the local devices in one compiled forward. Exit status 2 on bad input (`error: ...`) or when no
video could be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from mgvm.cli import add_model_args, fail, quiet_startup
from mgvm.datasets import decode as dec
from mgvm.datasets import stream

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
POOLS = ("mean", "tokens", "none")
# VideoMAE's K400 sampling rate: `checkpoints.DEFAULT_SAMPLING`'s, not imported from there so
# that --help does not load JAX.
DEFAULT_STRIDE = 4
DEFAULT_BATCH_SIZE = 16


def _stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def list_videos(spec: str) -> list[str]:
  """The video paths of a list file (one per line, relative to its folder) or a folder."""
  if os.path.isdir(spec):
    names = sorted(os.listdir(spec))
    paths = [os.path.join(spec, n) for n in names if n.lower().endswith(VIDEO_EXTENSIONS)]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
      raise ValueError(f"{spec}: no video files ({' '.join(VIDEO_EXTENSIONS)}) in this folder")
    return paths
  if not os.path.exists(spec):
    raise FileNotFoundError(f"--videos {spec}: no such file or folder")
  root = os.path.dirname(os.path.abspath(spec))
  with open(spec, encoding="utf-8") as f:
    lines = [line.strip() for line in f.read().splitlines()]
  paths = [os.path.join(root, line) for line in lines if line and not line.startswith("#")]
  if not paths:
    raise ValueError(f"{spec}: the list names no video")
  return paths


def output_names(paths: Sequence[str]) -> list[str]:
  """One file stem per path: the video's stem, `.1`, `.2`, ... appended to repeats."""
  used, names = set(), []
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0] or "video"
    name, k = stem, 0
    while name in used:
      k += 1
      name = f"{stem}.{k}"
    used.add(name)
    names.append(name)
  return names


def load(path: str, *, num_frames=None, image_size=None, num_heads=None, log: Callable = _stderr):
  """`mgvm.weights.checkpoints.load_model` (a `LoadedModel`)."""
  from mgvm.weights.checkpoints import load_model

  return load_model(
    path, num_frames=num_frames, image_size=image_size, num_heads=num_heads, log=log
  )


def square_size(loaded) -> int:
  """The side of the model's (square) evaluation view."""
  h, w = (int(s) for s in np.broadcast_to(np.asarray(loaded.image_size), (2,)))
  if h != w:
    raise ValueError(
      f"the model's image size is {h}x{w}; the evaluation view is square: give --image-size"
    )
  return h


def sampling_settings(loaded, fps: float | None, stride: int | None) -> dict:
  """{"fps", "stride"}: the command line's, else the checkpoint's training setting
  (`LoadedModel.sampling`: a run's test rate, else every 4th frame)."""
  if fps is not None or stride is not None:
    return {"fps": fps, "stride": stride or DEFAULT_STRIDE}
  return {"fps": loaded.sampling["target_fps"], "stride": int(loaded.sampling["frame_stride"])}


class BatchRunner:
  """Rows of one shape → fixed-size batches through one jit-compiled `fn(state, batch)`, split
  over the local devices on the batch axis (`mgvm.sharding`); the last batch is padded with
  zeros and the padding dropped. Results come back one batch late (`add` returns those of the
  previous batch), so the host decodes while the devices compute.
  """

  def __init__(self, fn, state, row_shape, dtype, batch_size: int, mesh=None):
    import jax

    from mgvm.sharding import make_mesh, replicated

    self.mesh = mesh or make_mesh(devices=jax.local_devices())
    devices = self.mesh.devices.size
    self.batch_size = -(-int(batch_size) // devices) * devices  # a multiple of the devices
    self.fn, self.row_shape, self.dtype = fn, tuple(row_shape), dtype
    self.state = jax.device_put(state, replicated(self.mesh))
    self._rows: np.ndarray | None = None
    self._tags: list = []
    self._pending = None

  def add(self, row, tag) -> list[tuple[Any, np.ndarray]]:
    """Queues one row; returns the `(tag, output row)` pairs that finished."""
    if self._rows is None:  # a fresh buffer: the previous one may still be read by the devices
      self._rows = np.zeros((self.batch_size,) + self.row_shape, self.dtype)
    self._rows[len(self._tags)] = row
    self._tags.append(tag)
    return self._dispatch() if len(self._tags) == self.batch_size else []

  def finish(self) -> list[tuple[Any, np.ndarray]]:
    """Runs the last (padded) batch; returns every pair not returned yet."""
    done = self._dispatch() if self._tags else []
    return done + self._collect()

  def _dispatch(self):
    from mgvm.sharding import to_global

    out = self.fn(self.state, to_global({"rows": self._rows}, self.mesh)["rows"])
    done = self._collect()
    self._pending, self._rows, self._tags = (out, self._tags), None, []
    return done

  def _collect(self):
    from mgvm.sharding import host_rows

    if self._pending is None:
      return []
    out, tags = self._pending
    self._pending = None
    rows = host_rows(out, self.mesh)
    return list(zip(tags, rows[: len(tags)]))


def feature_fn(loaded, pool: str):
  """(jit-compiled `fn(state, uint8 video [B, T, S, S, 3]) -> float32 features`, the model's
  state, the shape of one window's features)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mgvm.data.device_ops import normalize

  if pool not in POOLS:
    raise ValueError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
  graphdef, state = nnx.split(loaded.model)
  classifier = loaded.kind == "classifier"
  grid = tuple(int(g) for g in loaded.model.grid)
  dim = int(loaded.model.encoder.dim)
  normalization = loaded.normalization

  @jax.jit
  def features(state, video):
    model = nnx.merge(graphdef, state)
    tokens = model.encoder(normalize(video, normalization), deterministic=True)  # [B, N, D]
    if pool == "mean":
      pooled = tokens.mean(axis=1)
      out = model.fc_norm(pooled) if classifier else pooled
    elif pool == "tokens":
      out = tokens.reshape((tokens.shape[0],) + grid + (tokens.shape[-1],))
    else:
      out = tokens
    return out.astype(jnp.float32)

  shape = {"mean": (dim,), "tokens": grid + (dim,), "none": (int(np.prod(grid)), dim)}[pool]
  return features, state, shape


@dataclasses.dataclass(eq=False)
class _Job:
  """One video being written."""

  number: int  # in the input list
  path: str
  name: str
  windows: stream.WindowStream
  array: Any = None  # the open memmap
  written: int = 0
  failed: bool = False

  @property
  def partial(self) -> str:
    return self.array.filename if self.array is not None else ""


def _index_entry(job: _Job, out_dir: str, shape) -> dict:
  p, ws = job.windows.plan, job.windows
  times = p.sampled_times
  windows = []
  for w, start in enumerate(ws.starts):
    t = [float(x) for x in times[ws.frames(w)]]
    windows.append(
      {
        "start": int(start),
        "start_time": t[0],
        "end_time": t[-1],
        "frame_times": t,
        "padded": ws.padded,
      }
    )
  return {
    "path": job.path,
    "output": os.path.join(out_dir, job.name + ".npy"),
    "shape": list(shape),
    "source_fps": p.source_fps,
    "sampling": {
      "fps": p.source_fps / p.stride,  # sampled frames per second
      "stride": p.stride,  # constant-rate frames per sampled frame
      "source_frames": len(p.times),
      "constant_rate_frames": len(p.grid),
      "sampled_frames": p.num_sampled,
    },
    "padded": ws.padded,
    "windows": windows,
  }


def extract(
  loaded,
  paths: Sequence[str],
  out_dir: str,
  *,
  fps: float | None = None,
  stride: int = DEFAULT_STRIDE,
  window: int | None = None,
  hop: int | None = None,
  pool: str = "mean",
  batch_size: int = DEFAULT_BATCH_SIZE,
  progress: bool = True,
  log: Callable = _stderr,
  mesh=None,
) -> dict:
  """Writes every video's features to `out_dir` (module docstring); returns the index (also
  `out_dir/index.json`). `loaded`: a `mgvm.weights.checkpoints.LoadedModel`; `mesh`: default
  the local devices'."""
  from mgvm.datasets.shards import write_json

  window = int(window or loaded.num_frames)
  hop = int(hop or window)
  if window != loaded.num_frames:
    raise ValueError(f"--window {window} differs from the model's {loaded.num_frames} frames")
  size = square_size(loaded)
  fn, state, row_shape = feature_fn(loaded, pool)
  runner = BatchRunner(fn, state, (window, size, size, 3), np.uint8, batch_size, mesh)
  convert = stream.center_crop(size)
  os.makedirs(out_dir, exist_ok=True)
  names = output_names(paths)
  entries: dict[int, dict] = {}
  skipped: list[dict] = []
  open_jobs: list[_Job] = []
  bar = None
  if progress:
    import tqdm

    bar = tqdm.tqdm(total=0, unit="window", desc="features", file=sys.stderr, dynamic_ncols=True)

  def close(job: _Job, keep: bool) -> None:
    partial = job.partial
    if job.array is not None:
      job.array.flush()
      job.array = None  # unmaps it
    if keep:
      os.replace(partial, os.path.join(out_dir, job.name + ".npy"))
    elif partial and os.path.exists(partial):
      os.remove(partial)
    open_jobs.remove(job)

  def fail_job(job: _Job) -> None:
    job.failed = True
    if bar is not None:
      bar.total -= len(job.windows) - job.written
      bar.refresh()
    close(job, keep=False)

  def rows():
    for number, (path, name) in enumerate(zip(paths, names)):
      by_decoding, job = False, None
      while True:
        try:
          plan = stream.plan(path, fps=fps, stride=stride, by_decoding=by_decoding)
          job = _Job(number, path, name, stream.WindowStream(plan, window, hop, convert))
          job.array = np.lib.format.open_memmap(
            os.path.join(out_dir, f"{name}.npy.partial"),
            mode="w+",
            dtype=np.float32,
            shape=(len(job.windows),) + row_shape,
          )
          open_jobs.append(job)
          if bar is not None:
            bar.total += len(job.windows)
            bar.refresh()
          for w in job.windows:
            yield job, w
          break
        except stream.PlanMismatch:  # packets are not the frames: plan from decoded frames
          if job is not None:
            fail_job(job)
          by_decoding, job = True, None
        except dec.DecodeError as e:
          if job is not None:
            fail_job(job)
          skipped.append({"path": path, "reason": e.reason, "detail": e.detail})
          if bar is not None:
            bar.set_postfix(skipped=len(skipped))
          break

  def store(done) -> None:
    for (job, w), row in done:
      if job.failed:
        continue
      job.array[w] = row
      job.written += 1
      if bar is not None:
        bar.update(1)
      if job.written == len(job.windows):
        entries[job.number] = _index_entry(job, out_dir, job.array.shape)
        close(job, keep=True)

  try:
    for job, w in rows():
      store(runner.add(w.frames, (job, w.index)))
    store(runner.finish())
  finally:
    if bar is not None:
      bar.close()
    for job in list(open_jobs):  # interrupted: no half-written file stays
      close(job, keep=False)
  index = {
    "checkpoint": loaded.source,
    "model": {
      "kind": loaded.kind,
      "num_frames": int(loaded.num_frames),
      "image_size": size,
      "normalization": loaded.normalization,
    },
    "settings": {
      "fps": fps,
      "stride": None if fps else stride,
      "window": window,
      "hop": hop,
      "pool": pool,
      "batch_size": runner.batch_size,
      "devices": int(runner.mesh.devices.size),
    },
    "listed": len(paths),
    "written": len(entries),
    "videos": [entries[k] for k in sorted(entries)],
    "skipped": len(skipped),
    "skipped_by_reason": dec.skip_counts(skipped),
    "skipped_files": skipped,
  }
  write_json(os.path.join(out_dir, "index.json"), index)
  report_skips(log, "features", skipped)
  log(
    f"features: {len(entries)} of {len(paths)} videos written to {out_dir} "
    f"({sum(len(e['windows']) for e in entries.values())} windows, pool {pool}); "
    f"index {os.path.join(out_dir, 'index.json')}"
  )
  return index


def report_skips(log: Callable, tool: str, skipped: Sequence[dict]) -> None:
  """The skip report: counts by reason, then one line per skipped file."""
  if not skipped:
    return
  log(f"{tool}: {len(skipped)} video(s) skipped {dec.skip_counts(skipped)}")
  for s in skipped:
    log(f"  {s['path']}: {s['reason']}" + (f" ({s['detail']})" if s.get("detail") else ""))


def add_sampling_args(p: argparse.ArgumentParser) -> None:
  """`--fps` / `--stride`, exclusive (shared with `mgvm.predict`)."""
  g = p.add_mutually_exclusive_group()
  g.add_argument("--fps", type=float, default=None, help="sample frames at F per second")
  g.add_argument(
    "--stride",
    type=int,
    default=None,
    help="take every S-th frame (default: the checkpoint's training setting, else 4)",
  )


def check_positive(**values) -> None:
  """`fail` naming the first option that is given and not > 0."""
  for name, value in values.items():
    if value is not None and not value > 0:
      fail(f"--{name.replace('_', '-')} must be > 0, got {value}")


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(
    prog="python -m mgvm.features",
    description=__doc__.split("\n\n", 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--checkpoint", required=True, help="mgvm workdir, official .pth or HF folder")
  p.add_argument("--videos", required=True, help="a list file (one path per line) or a folder")
  p.add_argument("--out", required=True, help="output folder")
  add_sampling_args(p)
  p.add_argument("--window", type=int, default=None, help="frames per window (model's clip)")
  p.add_argument("--hop", type=int, default=None, help="sampled frames between windows (T)")
  p.add_argument("--pool", choices=POOLS, default="mean", help="mean | tokens | none")
  p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="windows per batch")
  add_model_args(p)
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  a = p.parse_args(argv)
  check_positive(
    fps=a.fps,
    stride=a.stride,
    window=a.window,
    hop=a.hop,
    batch_size=a.batch_size,
    image_size=a.image_size,
    num_frames=a.num_frames,
    num_heads=a.num_heads,
  )
  if a.window and a.num_frames and a.window != a.num_frames:
    fail(f"--window {a.window} and --num-frames {a.num_frames} differ: a window is one clip")
  quiet_startup()
  try:
    paths = list_videos(a.videos)
    loaded = load(
      a.checkpoint,
      num_frames=a.num_frames or a.window,
      image_size=a.image_size,
      num_heads=a.num_heads,
    )
    sampling = sampling_settings(loaded, a.fps, a.stride)
    index = extract(
      loaded,
      paths,
      a.out,
      fps=sampling["fps"],
      stride=sampling["stride"],
      window=a.window,
      hop=a.hop,
      pool=a.pool,
      batch_size=a.batch_size,
      progress=not a.no_progress,
    )
  except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
    fail(str(e))
  if not index["written"]:
    fail(f"no video could be read ({index['skipped']} skipped, listed in {a.out}/index.json)")
  return index


if __name__ == "__main__":
  main()
