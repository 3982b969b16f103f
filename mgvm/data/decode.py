"""Decoding video files with PyAV onto a constant frame rate chosen by timestamps.

Every file becomes uint8 frames on the grid t_k = t_0 + k / rate, where `rate` is the
stream's average rate (capped at `max_fps`) and frame k is the decoded frame whose timestamp
is nearest t_k (ties to the earlier one). A constant-rate file at or below the cap keeps every
frame; a variable-rate file is resampled by its timestamps instead of being assumed constant.

Files that cannot be used raise `DecodeError` with a short `reason` for per-reason counts:
`missing`, `empty` (zero bytes), `unreadable` (not a container PyAV can open),
`no_video_stream`, `no_frames`, `truncated` (a decoding error after some frames).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

REASONS = ("missing", "empty", "unreadable", "no_video_stream", "no_frames", "truncated")


class DecodeError(Exception):
  """A video file that cannot be used; `reason` is one of `REASONS`."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    assert reason in REASONS, reason
    self.path, self.reason, self.detail = path, reason, detail
    super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(eq=False)
class Decoded:
  frames: np.ndarray            # uint8 [N, H, W, 3]
  fps: float                    # the rate of `frames` (constant)
  source_fps: float             # the stream's average rate
  timestamps: np.ndarray        # float64 [N] seconds of the chosen source frames


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


def decode(path: str, *, max_fps: float | None = None, short_side: int | None = None) -> Decoded:
  """All frames of `path` on a constant grid (see the module docstring)."""
  import av  # imported here: listing / parsing code never needs it

  if not os.path.exists(path):
    raise DecodeError(path, "missing")
  if os.path.getsize(path) == 0:
    raise DecodeError(path, "empty")
  try:
    container = av.open(path)
  except Exception as e:  # PyAV raises several error types for garbage input
    raise DecodeError(path, "unreadable", type(e).__name__) from None
  with container:
    if not container.streams.video:
      raise DecodeError(path, "no_video_stream")
    stream = container.streams.video[0]
    frames, times = [], []
    try:
      for frame in container.decode(stream):
        if frame.pts is None and frame.time is None:
          continue
        times.append(float(frame.time) if frame.time is not None
                     else float(frame.pts * stream.time_base))
        frames.append(frame)
    except Exception as e:
      if not frames:
        raise DecodeError(path, "unreadable", type(e).__name__) from None
      raise DecodeError(path, "truncated", f"{type(e).__name__} after {len(frames)} frames"
                        ) from None
    if not frames:
      raise DecodeError(path, "no_frames")
    rate = stream.average_rate or stream.guessed_rate
    source_fps = float(rate) if rate else 0.0
    times = np.asarray(times, np.float64)
    order = np.argsort(times, kind="stable")  # decode order is not always pts order
    t = times[order]
    if source_fps <= 0:  # no rate in the header: estimate it from the timestamps
      source_fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 1.0
    fps = min(source_fps, max_fps) if max_fps else source_fps
    picked = constant_rate_indices(t, fps)  # into the time-sorted frames
    height, width = _resize_shape(frames[0].height, frames[0].width, short_side)
    images = np.stack([frames[i].to_ndarray(format="rgb24", width=width, height=height)
                       for i in order[picked]])
  return Decoded(frames=images, fps=float(fps), source_fps=float(source_fps), timestamps=t[picked])
