"""The synthetic set through H.264: codec motion vectors scored against the exact motion.

`codec_motion_error` renders synthetic videos, encodes each to H.264 in memory with PyAV
(libx264; `mgvm.datasets.motion_vectors.X264_OPTIONS` unless `options` says otherwise),
extracts the codec's motion field (`motion_vectors.codec_motion`) and reports the end-point
error per block against the true per-block motion (`block_motion_truth`): the displacement from
the previous frame of the object covering the block's centre, else the background pan (0
without pan). Object motion is the object's centre displacement, exact for translations only:
score translating classes (the default `TRANSLATIONS`) to measure the codec, not the definition.
`*_interior` scores only blocks that one motion fills (centre and corners on the same object,
or all on the background), without the mixing at object edges; `actor_interior` only those on
actors (constant velocity with `TRANSLATIONS`; distractors jitter at 1.5-4 Hz).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable

import numpy as np

from mgvm.datasets.synthetic.config import TRANSLATIONS, SyntheticConfig
from mgvm.datasets.synthetic.render import covering_objects, render_scene
from mgvm.datasets.synthetic.scene import Scene, sample_scene


def block_centres(size: int, block: int) -> tuple[np.ndarray, np.ndarray]:
  """x, y [gh, gw] px of the centres of the grid's cells (the part inside the image)."""
  edges = np.minimum(np.arange(-(-size // block) + 1) * block, size)
  centres = (edges[:-1] + edges[1:]) / 2
  return np.meshgrid(centres, centres)


def block_motion_truth(scene: Scene, fps: float, num_frames: int, block: int):
  """(motion float32 [N, gh, gw, 2], owner int [N, gh, gw], pure bool [N, gh, gw]) of a video of
  `scene` at `fps`.

  motion[i]: (dx, dy) px from frame i − 1 to frame i of the object covering the cell's centre
  in frame i (`owner` = its index), else the background pan (`owner` −1). Frame 0: 0. `pure`:
  the cell's corners (half a pixel inside) have the centre's owner too.
  """
  times = np.arange(num_frames) / fps
  x, y = block_centres(scene.image_size, block)
  owner = covering_objects(scene, times, x, y).reshape(num_frames, *x.shape)
  edges = np.minimum(np.arange(x.shape[1] + 1) * block, scene.image_size)
  lo, hi = edges[:-1] + 0.5, edges[1:] - 0.5
  pure = np.ones(owner.shape, bool)
  for cy in (lo, hi):
    for cx in (lo, hi):
      corner_x, corner_y = np.meshgrid(cx, cy)
      pure &= covering_objects(scene, times, corner_x, corner_y).reshape(owner.shape) == owner
  centers = scene.poses(times)[0]  # [N, O, 2]
  step = np.concatenate([np.zeros_like(centers[:1]), np.diff(centers, axis=0)])
  pan = np.asarray(scene.pan, np.float64) / fps
  of_owner = step[np.arange(num_frames)[:, None, None], np.maximum(owner, 0)]  # [N, gh, gw, 2]
  motion = np.where(owner[..., None] >= 0, of_owner, pan)
  motion[0] = 0
  return motion.astype(np.float32), owner, pure


@dataclasses.dataclass
class _Sums:
  count: int = 0
  error: float = 0.0
  zero: float = 0.0  # the error of predicting no motion

  def add(self, errors: np.ndarray, truth: np.ndarray) -> None:
    self.count += int(errors.size)
    self.error += float(errors.sum())
    self.zero += float(np.hypot(truth[..., 0], truth[..., 1]).sum())

  def report(self) -> dict:
    n = self.count
    return {
      "blocks": n,
      "epe": self.error / n if n else None,
      "zero_epe": self.zero / n if n else None,
    }


def codec_motion_error(
  config: SyntheticConfig | None = None,
  *,
  seed: int = 0,
  split: str = "val",
  indices: Iterable[int] = range(8),
  block: int = 16,
  options: dict | None = None,
) -> dict:
  """Mean end-point error (px per frame) of the H.264 motion field on synthetic videos.

  `config` defaults to translations only (`TRANSLATIONS`) at 128 px. Returns, over frames
  1..N−1 of every video, for `object` blocks (centre on an object), `background` blocks and
  their `object_interior` / `actor_interior` / `background_interior` parts (one motion fills
  the block; `actor_interior`: on an actor):
  `blocks` (valid ones scored), `epe` (codec vs truth), `zero_epe` (no motion vs truth); and
  `valid_share`, `frame_types` counts, `videos`, `frames`, `seconds` (encode + extract).
  """
  from mgvm.datasets import motion_vectors

  config = config or SyntheticConfig(image_size=128, classes=TRANSLATIONS)
  names = ("object", "object_interior", "actor_interior", "background", "background_interior")
  sums = {name: _Sums() for name in names}
  blocks = valid = frames = videos = 0
  types = np.zeros(4, np.int64)
  seconds = 0.0
  for index in indices:
    scene = sample_scene(config, seed, split, index)
    video = render_scene(scene)
    start = time.perf_counter()
    field = motion_vectors.codec_motion(video.frames, block=block, options=options)
    seconds += time.perf_counter() - start
    truth, owner, pure = block_motion_truth(scene, video.fps, video.num_frames, block)
    ok, on, pure = field.valid[1:], owner[1:] >= 0, pure[1:]
    errors = np.hypot(*np.moveaxis(field.vectors[1:] - truth[1:], -1, 0))
    actor = on & (owner[1:] < scene.num_actors)
    for name, where in zip(names, (on, on & pure, actor & pure, ~on, ~on & pure)):
      sums[name].add(errors[where & ok], truth[1:][where & ok])
    blocks += ok.size
    valid += int(ok.sum())
    frames += video.num_frames
    videos += 1
    types += np.bincount(field.frame_types, minlength=4)
  return {
    **{name: s.report() for name, s in sums.items()},
    "valid_share": valid / blocks if blocks else None,
    "frame_types": dict(zip(("I", "P", "B", "other"), types.tolist())),
    "videos": videos,
    "frames": frames,
    "seconds": round(seconds, 3),
  }


def write_video(path: str, frames: np.ndarray, fps: float, *, codec: str = "libx264", options=None):
  """Writes uint8 RGB frames [N, H, W, 3] as a video file with PyAV (`options`: the encoder's,
  e.g. {"crf": "18"}; default settings otherwise). Returns `path`."""
  from fractions import Fraction

  import av

  frames = np.asarray(frames, np.uint8)
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    if options:
      stream.codec_context.options = dict(options)
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return str(path)


def _best(run, repeats: int) -> float:
  """The least CPU time (s, every thread of this process) of `repeats` runs: robust to other
  processes sharing the cores."""
  times = []
  for _ in range(repeats):
    start = time.process_time()
    run()
    times.append(time.process_time() - start)
  return min(times)


def _decode_only(path: str, export: bool) -> None:
  """libavcodec's decoding alone (no conversion), with or without vector export."""
  import av

  from mgvm.datasets import motion_vectors

  with av.open(path) as container:
    stream = container.streams.video[0]
    if export:
      motion_vectors.enable_export(stream.codec_context)
    for frame in container.decode(stream):
      if export:
        motion_vectors.frame_vectors(frame)


def motion_cost(
  config: SyntheticConfig | None = None,
  *,
  seed: int = 0,
  split: str = "val",
  indices: Iterable[int] = range(4),
  repeats: int = 3,
  workdir: str | None = None,
) -> dict:
  """What the motion field costs: CPU ms per frame (best of `repeats`, all videos together).

  Renders the videos, writes each as H.264 (libx264's defaults: B-frames, 3 references) and VP9
  (libvpx-vp9's defaults), then times `decode` (libavcodec alone, without and with vector
  export), `prepare` (`decode.decode_or_skip`, JPEG frames: what prepare runs per video, without
  and with `--motion-vectors`: export, rasterisation; VP9 is transcoded) and `always` (H.264
  transcoded too). `config` defaults to `TRANSLATIONS` at 256 px.
  """
  import tempfile

  from mgvm.datasets import decode as dec
  from mgvm.datasets import motion_vectors

  config = config or SyntheticConfig(image_size=256, classes=TRANSLATIONS)
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    h264, vp9, frames = [], [], 0
    for index in indices:
      video = render_scene(sample_scene(config, seed, split, index))
      h264.append(write_video(f"{tmp}/{index}.mp4", video.frames, video.fps))
      vp9.append(write_video(f"{tmp}/{index}.webm", video.frames, video.fps, codec="libvpx-vp9"))
      frames += video.num_frames

    def each(paths, fn):
      return lambda: [fn(p) for p in paths]

    def prepare(motion):
      settings = None if motion is None else motion_vectors.MotionSettings(transcode=motion)
      return lambda p: dec.decode_or_skip(p, motion=settings)

    seconds = {
      "h264_decode": each(h264, lambda p: _decode_only(p, False)),
      "h264_decode_export": each(h264, lambda p: _decode_only(p, True)),
      "h264_prepare": each(h264, prepare(None)),
      "h264_prepare_motion": each(h264, prepare("auto")),
      "h264_prepare_always": each(h264, prepare("always")),
      "vp9_prepare": each(vp9, prepare(None)),
      "vp9_prepare_motion": each(vp9, prepare("auto")),
    }
    ms = {k: 1000 * _best(run, repeats) / frames for k, run in seconds.items()}
  return {
    "ms_per_frame": {k: round(v, 4) for k, v in ms.items()},
    "export_overhead": round(ms["h264_decode_export"] / ms["h264_decode"] - 1, 3),
    "prepare_overhead_h264": round(ms["h264_prepare_motion"] / ms["h264_prepare"] - 1, 3),
    "prepare_overhead_vp9_transcoded": round(ms["vp9_prepare_motion"] / ms["vp9_prepare"] - 1, 3),
    "videos": len(h264),
    "frames": frames,
    "image_size": config.image_size,
  }
