"""Streaming a video's frames at a constant rate: sampled frames, windows, bounded memory.

A video's *source frames* are its frames in timestamp order; its *constant-rate frames* are the
ones `mgvm.datasets.decode.decode` keeps (the grid t_0 + k / rate at the stream's average rate,
nearest frame, `constant_rate_indices`); its *sampled frames* are the constant-rate frames
`floor(j · stride + 0.5)`, j = 0, 1, ... while inside the video (`mgvm.data.sampling`'s rule),
with `stride = source fps / fps` (`fps` given) or a fixed integer `stride`.

`plan(path, ...)` finds all of it from the packets' timestamps, without decoding (a file whose
packets carry none is decoded once, without conversion, for its frames' own timestamps).
`read_frames(plan, wanted, convert)` then decodes the file once, front to back, and yields
`convert(rgb)` of the wanted source frames only, in order, stopping after the last; it keeps
nothing. A file whose decoded frames turn out not to be its packets one to one raises
`PlanMismatch`: plan it again with `by_decoding=True` (as `decode` falls back to its in-memory
pass).

Windows (`window_starts`): `window` consecutive sampled frames starting at sampled frame 0,
hop, 2·hop, ... while start + window <= the number of sampled frames (the frames after the last
full window are not used). A video shorter than one window gives one window whose missing
frames repeat its last frame (`padded`). `WindowStream` assembles the windows as the frames are
decoded, holding at most `window` converted frames (a ring), and converts only frames that some
window uses.

`center_crop(size)` and `crop_views(size, num_crops)` convert one RGB frame into the evaluation
views of `mgvm.data.video_ops` (`resize_center_crop`, `spatial_crops`), rounded to uint8 as the
evaluation pipeline feeds them to the model (`video_ops.to_uint8`).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from mgvm.datasets import decode as dec


class PlanMismatch(Exception):
  """The decoded frames are not the packets the plan was made from: plan with `by_decoding`."""


@dataclasses.dataclass(eq=False)
class FramePlan:
  """Which frames of `path` a reader takes (module docstring)."""

  path: str
  source_fps: float  # the stream's average rate: the rate of the constant-rate frames
  stride: float  # constant-rate frames per sampled frame
  times: np.ndarray  # float64 [N]: timestamps (s) of the source frames, sorted
  keys: np.ndarray  # int64 [N]: how the reader knows source frame k: its pts, or decode position
  by_pts: bool  # keys are pts (planned from packets), else decode positions
  grid: np.ndarray  # int64 [M]: the source frame of each constant-rate frame
  sampled: np.ndarray  # int64 [n]: the constant-rate frame of each sampled frame

  @property
  def num_sampled(self) -> int:
    return len(self.sampled)

  @property
  def sampled_source(self) -> np.ndarray:
    """int64 [n]: the source frame of each sampled frame (non-decreasing)."""
    return self.grid[self.sampled]

  @property
  def sampled_times(self) -> np.ndarray:
    """float64 [n]: the timestamp (s) of each sampled frame."""
    return self.times[self.sampled_source]


def sampled_positions(num_constant: int, stride: float) -> np.ndarray:
  """int64: `floor(j · stride + 0.5)` for j = 0, 1, ... while below `num_constant`."""
  stride = float(stride)
  if not stride > 0:
    raise ValueError(f"stride must be > 0, got {stride}")
  j = np.arange(int(np.ceil((num_constant + 1) / stride)) + 2, dtype=np.float64)
  positions = np.floor(j * np.float64(stride) + 0.5).astype(np.int64)
  return positions[positions < num_constant]


def _decoded_times(path: str) -> tuple[np.ndarray, float, np.ndarray]:
  """(sorted timestamps, source fps, decode position of each) from one decoding pass."""
  with dec.open_container(path) as container:
    stream = container.streams.video[0]
    times = []
    try:
      for frame in container.decode(stream):
        t = _frame_time(frame, stream)
        if t is not None:
          times.append(t)
    except Exception as e:
      raise dec.decode_failure(path, e, len(times)) from None
    if not times:
      raise dec.DecodeError(path, "no_frames")
    times = np.asarray(times, np.float64)
    order = np.argsort(times, kind="stable")
    source_fps, _ = dec.stream_rates(stream, times[order], None)
  return times[order], source_fps, order.astype(np.int64)


def _frame_time(frame, stream) -> float | None:
  """A decoded frame's timestamp (s), as `decode`'s in-memory pass reads it; None: it has none."""
  if frame.time is not None:
    return float(frame.time)
  return None if frame.pts is None else float(frame.pts * stream.time_base)


def plan(
  path: str, *, fps: float | None = None, stride: float = 4, by_decoding: bool = False
) -> FramePlan:
  """The sampled frames of `path` at `fps` per second (> 0), else every `stride`-th constant-rate
  frame. Raises `DecodeError` for a file that cannot be used."""
  from mgvm.data import sampling  # TensorFlow: imported when used

  if fps is not None and not fps > 0:
    raise ValueError(f"fps must be > 0, got {fps}")
  step = sampling.stride_for_np(1.0, None, stride) if not fps else None  # checks `stride`
  found = None if by_decoding else dec.packet_pts(path)
  if found is not None and len(found[0]):
    pts, time_base = found
    times = np.asarray([float(p * time_base) for p in pts], np.float64)
    with dec.open_container(path) as container:
      source_fps, _ = dec.stream_rates(container.streams.video[0], times, None)
    keys, by_pts = pts.astype(np.int64), True
  else:
    times, source_fps, keys = _decoded_times(path)
    by_pts = False
  grid = dec.constant_rate_indices(times, source_fps)
  if fps:
    step = sampling.stride_for_np(source_fps, fps)
  return FramePlan(
    path=path,
    source_fps=float(source_fps),
    stride=float(step),
    times=times,
    keys=keys,
    by_pts=by_pts,
    grid=grid,
    sampled=sampled_positions(len(grid), step),
  )


def read_frames(
  frame_plan: FramePlan, wanted, convert: Callable[[np.ndarray], Any] | None = None
) -> Iterator[tuple[int, Any]]:
  """`(k, convert(rgb))` for each source frame k of `wanted` (any order, repeats allowed), in
  ascending k, from one sequential decoding pass that stops after the last wanted frame.

  `rgb` is uint8 [H, W, 3] as `decode` converts it. Raises `DecodeError` (`truncated`,
  `unreadable`) or `PlanMismatch` (packets and frames differ: plan with `by_decoding=True`).
  """
  p = frame_plan
  convert = convert or (lambda image: image)
  wanted = np.unique(np.asarray(wanted, np.int64))
  if not len(wanted):
    return
  targets = p.keys[wanted]
  if np.any(np.diff(targets) < 0):  # only for position keys: decode order != timestamp order
    raise dec.DecodeError(p.path, "unreadable", "frames decode out of timestamp order")
  with dec.open_container(p.path) as container:
    stream = container.streams.video[0]
    frames = container.decode(stream)
    i = position = 0
    while True:
      try:
        frame = next(frames)
      except StopIteration:
        break
      except Exception as e:
        raise dec.decode_failure(p.path, e, position) from None
      if p.by_pts:
        if frame.pts is None:
          raise PlanMismatch(p.path)
        key = frame.pts
      elif _frame_time(frame, stream) is None:
        continue  # the planning pass skipped it too
      else:
        key = position
      position += 1
      if key > targets[i]:
        raise PlanMismatch(p.path)  # the wanted frame never came
      if key < targets[i]:
        continue
      image = frame.to_ndarray(format="rgb24", width=frame.width, height=frame.height)
      yield int(wanted[i]), convert(image)
      i += 1
      if i == len(wanted):
        return
  if p.by_pts:
    raise PlanMismatch(p.path)
  raise dec.DecodeError(p.path, "truncated", f"{position} frames, {len(p.keys)} planned")


# ------------------------------------------------------------------------------------ windows


def window_starts(num_sampled: int, window: int, hop: int) -> list[int]:
  """Sampled frame 0, hop, 2·hop, ... while start + window <= num_sampled; [0] (one padded
  window) when the video is shorter than one window."""
  if window < 1 or hop < 1:
    raise ValueError(f"window and hop must be >= 1, got {window}, {hop}")
  if num_sampled < window:
    return [0]
  return list(range(0, num_sampled - window + 1, hop))


def window_frames(start: int, window: int, num_sampled: int) -> np.ndarray:
  """int64 [window]: the sampled frames of the window at `start` (the last one repeated past the
  end)."""
  return np.minimum(start + np.arange(window, dtype=np.int64), num_sampled - 1)


@dataclasses.dataclass
class Window:
  index: int  # of the window in the video
  start: int  # its first sampled frame
  frames: np.ndarray  # [window, ...]: the converted frames, stacked
  padded: bool  # the video is shorter than one window: its last frame repeats


class WindowStream:
  """The windows of one planned video, converted frame by frame as they are decoded.

  Iterating yields each `Window` once its last frame is decoded. At most `window` converted
  frames are held at a time (`max_held` records the most); frames no window uses are decoded
  but not converted.
  """

  def __init__(self, frame_plan: FramePlan, window: int, hop: int, convert=None):
    self.plan, self.window, self.convert = frame_plan, int(window), convert
    self.starts = window_starts(frame_plan.num_sampled, self.window, int(hop))
    self.max_held = 0

  @property
  def padded(self) -> bool:
    return self.plan.num_sampled < self.window

  def __len__(self) -> int:
    return len(self.starts)

  def frames(self, index: int) -> np.ndarray:
    """int64 [window]: the sampled frames of window `index`."""
    return window_frames(self.starts[index], self.window, self.plan.num_sampled)

  def __iter__(self) -> Iterator[Window]:
    n, size = self.plan.num_sampled, self.window
    used = np.zeros(n, bool)
    for start in self.starts:
      used[start : start + size] = True
    needed = np.flatnonzero(used)  # sampled frames some window uses, ascending
    source = self.plan.sampled_source[needed]  # non-decreasing
    ends = [min(start + size, n) - 1 for start in self.starts]
    ring: collections.deque = collections.deque(maxlen=size)  # (sampled frame, image)
    w = p = 0
    for k, image in read_frames(self.plan, source, self.convert):
      while p < len(needed) and source[p] == k:  # every sampled frame of source frame k
        j = int(needed[p])
        p += 1
        ring.append((j, image))
        self.max_held = max(self.max_held, len(ring))
        while w < len(self.starts) and ends[w] == j:
          start = self.starts[w]
          images = [im for jj, im in ring if jj >= start]
          images += images[-1:] * (size - len(images))  # padded: the last frame repeats
          yield Window(w, start, np.stack(images), self.padded)
          w += 1
      del image
    assert w == len(self.starts), (self.plan.path, w, len(self.starts))


# ------------------------------------------------------------------------------ conversions


def center_crop(size: int) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]: `video_ops.resize_center_crop` of the frame,
  then `video_ops.to_uint8` (the evaluation pipeline's single view)."""
  import tensorflow as tf

  from mgvm.data import video_ops

  @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
  def view(frame):
    return video_ops.to_uint8(video_ops.resize_center_crop(frame, size))[0]

  return lambda rgb: view(rgb[None]).numpy()


def crop_views(size: int, num_crops: int) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 [H, W, 3] -> uint8 [num_crops, size, size, 3]: `video_ops.spatial_crops` of the
  frame (short side to `size`, crops along the long side), then `video_ops.to_uint8`."""
  import tensorflow as tf

  from mgvm.data import video_ops

  @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
  def views(frame):
    return video_ops.to_uint8(video_ops.spatial_crops(frame, size, num_crops))[:, 0]

  return lambda rgb: views(rgb[None]).numpy()
