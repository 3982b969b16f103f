"""Decoding video files with PyAV onto a constant frame rate chosen by timestamps.

Every file becomes uint8 frames on the grid t_k = t_0 + k / rate, where `rate` is the
stream's average rate (capped at `max_fps`) and frame k is the decoded frame whose timestamp
is nearest t_k (ties to the earlier one). A constant-rate file at or below the cap keeps every
frame; a variable-rate file is resampled by its timestamps instead of being assumed constant.

Files that cannot be used raise `DecodeError` with a short `reason` for per-reason counts:
`missing`, `empty` (zero bytes), `unreadable` (not a container PyAV can open),
`no_video_stream`, `no_frames`, `truncated` (a decoding error after some frames), and with
`motion` under `transcode="never"`, `no_motion_vectors` (a codec that exports none).

`motion=MotionSettings(...)` also returns the codec's motion field of the stored frames
(`mgvm.datasets.motion_vectors`), read in the same decoding pass; the frames do not change.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

REASONS = (
  "missing",
  "empty",
  "unreadable",
  "no_video_stream",
  "no_frames",
  "truncated",
  "no_motion_vectors",
)


class DecodeError(Exception):
  """A video file that cannot be used; `reason` is one of `REASONS`."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    assert reason in REASONS, reason
    self.path, self.reason, self.detail = path, reason, detail
    super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(eq=False)
class Decoded:
  frames: np.ndarray | list  # uint8 [N, H, W, 3], or the `convert`ed frames
  fps: float  # the rate of `frames` (constant)
  source_fps: float  # the stream's average rate
  timestamps: np.ndarray  # float64 [N] seconds of the chosen source frames
  height: int = 0  # of the stored (resized) frames
  width: int = 0
  motion: object = None  # motion_vectors.Field of the stored frames, when asked for


def _resize_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
  if not short_side or min(height, width) <= short_side:
    return height, width
  scale = short_side / min(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def constant_rate_indices(timestamps: np.ndarray, rate: float) -> np.ndarray:
  """Indices into sorted `timestamps` (s) of the frames nearest t_0 + k / rate, k = 0, 1, ...

  The grid runs while t_k is not past the last timestamp by more than half a step.
  """
  t = np.asarray(timestamps, np.float64)
  if t.size == 0:
    return np.zeros(0, np.int64)
  span = t[-1] - t[0]
  count = int(np.floor(span * rate + 0.5 + 1e-6)) + 1
  grid = t[0] + np.arange(count) / rate
  right = np.clip(np.searchsorted(t, grid, side="left"), 0, len(t) - 1)
  left = np.clip(right - 1, 0, len(t) - 1)
  take_left = np.abs(grid - t[left]) <= np.abs(t[right] - grid)
  return np.where(take_left, left, right).astype(np.int64)


def open_container(path: str):
  """The PyAV container of `path`, which has a video stream; `DecodeError` (missing, empty,
  unreadable, no_video_stream) otherwise."""
  import av  # imported here: listing / parsing code never needs it

  if not os.path.exists(path):
    raise DecodeError(path, "missing")
  if os.path.getsize(path) == 0:
    raise DecodeError(path, "empty")
  try:
    container = av.open(path)
  except Exception as e:  # PyAV raises several error types for garbage input
    raise DecodeError(path, "unreadable", type(e).__name__) from None
  if not container.streams.video:
    container.close()
    raise DecodeError(path, "no_video_stream")
  return container


def stream_rates(stream, t: np.ndarray, max_fps: float | None) -> tuple[float, float]:
  """(source rate, stored rate): the stream's average rate (else from timestamps), capped."""
  rate = stream.average_rate or stream.guessed_rate
  source_fps = float(rate) if rate else 0.0
  if source_fps <= 0:  # no rate in the header: estimate it from the timestamps
    source_fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 1.0
  return source_fps, (min(source_fps, max_fps) if max_fps else source_fps)


def decode_failure(path: str, error: Exception, kept: int) -> DecodeError:
  """The `DecodeError` of a decoding `error` after `kept` frames: unreadable, else truncated."""
  if not kept:
    return DecodeError(path, "unreadable", type(error).__name__)
  return DecodeError(path, "truncated", f"{type(error).__name__} after {kept} frames")


class _Mismatch(Exception):
  """The decoded frames are not one per packet in timestamp order: use the in-memory path."""


def packet_pts(path: str) -> tuple[np.ndarray, object] | None:
  """Pass 1, demuxing only: the sorted pts of the video packets, or None if some lack one."""
  with open_container(path) as container:
    stream = container.streams.video[0]
    pts = []
    try:
      for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's final flush packet
          continue
        if packet.pts is None:
          return None
        pts.append(packet.pts)
    except Exception:
      return None  # let the decoding pass name the problem
    return np.sort(np.asarray(pts, np.int64)), stream.time_base


def _extractor(path, stream, picked, motion):
  if motion is None:
    return None
  from mgvm.datasets import motion_vectors

  return motion_vectors.Extractor(path, stream, picked, motion)


def _decode_streaming(path, max_fps, short_side, convert, motion=None) -> Decoded:
  """Two passes: packet timestamps pick the frames, then only those are converted and kept."""
  found = packet_pts(path)
  if found is None or len(found[0]) == 0:
    raise _Mismatch()
  pts, time_base = found
  t = np.asarray([float(p * time_base) for p in pts], np.float64)
  with open_container(path) as container:
    stream = container.streams.video[0]
    source_fps, fps = stream_rates(stream, t, max_fps)
    picked = constant_rate_indices(t, fps)
    copies = np.bincount(picked, minlength=len(pts))
    extractor = _extractor(path, stream, picked, motion)
    kept, k, size = [], 0, None
    try:
      for frame in container.decode(stream):
        if frame.pts is None or k >= len(pts) or frame.pts != pts[k]:
          raise _Mismatch()
        if size is None:
          size = _resize_shape(frame.height, frame.width, short_side)
        if copies[k]:
          image = convert(frame.to_ndarray(format="rgb24", width=size[1], height=size[0]))
          kept.extend([image] * int(copies[k]))
        if extractor is not None:
          extractor.add(frame, size)
        k += 1
    except _Mismatch:
      raise
    except Exception as e:
      raise decode_failure(path, e, k) from None
    if k != len(pts):
      raise _Mismatch()
    field = extractor.finish() if extractor is not None else None
  return Decoded(
    frames=kept,
    fps=float(fps),
    source_fps=float(source_fps),
    timestamps=t[picked],
    height=size[0] if size else 0,
    width=size[1] if size else 0,
    motion=field,
  )


def _decode_in_memory(path, max_fps, short_side, convert, motion=None) -> Decoded:
  """One pass holding every decoded frame (for files whose packets do not map 1:1 to frames)."""
  with open_container(path) as container:
    stream = container.streams.video[0]
    extractor = _extractor(path, stream, None, motion)  # switches the export on: before decoding
    frames, times = [], []
    try:
      for frame in container.decode(stream):
        if frame.pts is None and frame.time is None:
          continue
        times.append(
          float(frame.time) if frame.time is not None else float(frame.pts * stream.time_base)
        )
        frames.append(frame)
    except Exception as e:
      raise decode_failure(path, e, len(frames)) from None
    if not frames:
      raise DecodeError(path, "no_frames")
    times = np.asarray(times, np.float64)
    order = np.argsort(times, kind="stable")  # decode order is not always pts order
    t = times[order]
    source_fps, fps = stream_rates(stream, t, max_fps)
    picked = constant_rate_indices(t, fps)  # into the time-sorted frames
    height, width = _resize_shape(frames[0].height, frames[0].width, short_side)
    images = [
      convert(frames[i].to_ndarray(format="rgb24", width=width, height=height))
      for i in order[picked]
    ]
    field = None
    if extractor is not None:
      extractor.picked = picked
      for i in order:  # display order
        extractor.add(frames[i], (height, width))
      field = extractor.finish()
  return Decoded(
    frames=images,
    fps=float(fps),
    source_fps=float(source_fps),
    timestamps=t[picked],
    height=height,
    width=width,
    motion=field,
  )


def decode(
  path: str,
  *,
  max_fps: float | None = None,
  short_side: int | None = None,
  convert=None,
  motion=None,
) -> Decoded:
  """The frames of `path` on a constant grid (see the module docstring).

  Memory stays bounded by the *kept* frames: a first pass reads the packets' timestamps without
  decoding, the second decodes and keeps only the frames the grid picks, each passed through
  `convert` (e.g. JPEG encoding) as it is decoded. `frames` is then the list of `convert`
  results; without `convert`, a uint8 [N, H, W, 3] array. Files whose packets do not map one
  to one onto decoded frames fall back to a single pass that holds every decoded frame.
  `motion` (`motion_vectors.MotionSettings`): also the codec's motion field of the stored frames
  (`out.motion`, a `motion_vectors.Field`), from the same decoding pass.
  """
  keep = convert or (lambda image: image)
  try:
    out = _decode_streaming(path, max_fps, short_side, keep, motion)
  except _Mismatch:
    out = _decode_in_memory(path, max_fps, short_side, keep, motion)
  if not out.frames:
    raise DecodeError(path, "no_frames")
  if convert is None:
    out.frames = np.stack(out.frames)
  return out


def jpeg_encoder(quality: int = 90):
  """A `convert` for `decode`: one uint8 [H, W, 3] frame → JPEG bytes (Pillow, 4:4:4 chroma)."""
  import io

  from PIL import Image

  def encode(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()

  return encode


def decode_or_skip(
  path: str,
  *,
  short_side: int | None = None,
  max_fps: float | None = None,
  jpeg_quality: int = 90,
  motion=None,
) -> Decoded | dict:
  """What every writer does with one listed file (`prepare`, the tfds builders): the `Decoded`
  video holding per-frame JPEG bytes (encoded as each frame is decoded), or, for a file that
  cannot be used, its skip record `{"path", "reason", "detail"}` (never an exception).
  `motion`: also its motion field (`decode`)."""
  try:
    return decode(
      path,
      max_fps=max_fps,
      short_side=short_side,
      convert=jpeg_encoder(jpeg_quality),
      motion=motion,
    )
  except DecodeError as e:
    return {"path": path, "reason": e.reason, "detail": e.detail}


def skip_counts(skipped) -> dict[str, int]:
  """{reason: count} of skip records, sorted by reason."""
  return dict(sorted(collections.Counter(s["reason"] for s in skipped).items()))
