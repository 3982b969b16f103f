"""FPS-aware temporal sampling: which source frames make a clip (docs/algorithms.md §0.4).

A clip of `num_out` frames taken with a (possibly fractional) `stride` from `start` uses

  index_i = (start + floor(i * stride + 0.5)) mod num_frames,   i = 0 .. num_out - 1

so it spans `span = floor((num_out - 1) * stride + 0.5) + 1` source frames; videos shorter than
the span wrap around (dmvr's behaviour). `stride = src_fps / target_fps`, or a fixed integer
`frame_stride` (VideoMAE's `sampling_rate`) when `target_fps` is None or 0.

Starts: training draws an integer uniformly from [0, max_start] with
`max_start = max(0, num_frames - span)`; evaluation takes the centre `max_start // 2`, or for
K clips `round(k * max_start / (K - 1))`, k = 0 .. K - 1.

Segment sampling (`temporal="segment"`, VideoMAE's SSv2 / TSN "sparse" sampling) ignores the
frame rate: the video is cut into `num_out` segments. Training takes one random frame per segment
(`i * (n // T) + randint(n // T)`, as the reference; for videos shorter than `num_out`, where the
reference repeats frame 0, `floor(i * n / T)`); evaluation clip k of K takes
`int(i * n / T + k * (n / T) / K)`, i.e. for K = 2 the first and the middle frame of every
segment (VideoMAE's SSv2 test). Its `stride` is `n / T`.

FPS augmentation: `target_fps` may be a list in training; each clip draws one entry uniformly
(`draw_target_fps`).

Every function has a numpy reference (`*_np`) and a TensorFlow version (graph-safe, used by
the tf.data pipeline); arithmetic is float64 in both so they agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def _check_stride_args(target_fps, frame_stride):
  if target_fps is not None and target_fps < 0:
    raise ValueError(f"target_fps must be None, 0 or > 0, got {target_fps}")
  if not target_fps and (int(frame_stride) != frame_stride or frame_stride < 1):
    raise ValueError(f"frame_stride must be an integer >= 1, got {frame_stride}")


def _check_count(name, value):
  if int(value) != value or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value}")


# ---------------------------------------------------------------------------------- numpy


def stride_for_np(src_fps: float, target_fps: float | None, frame_stride: int = 4) -> float:
  """`src_fps / target_fps`, or `frame_stride` when `target_fps` is None or 0.

  `src_fps` is rounded to float32 first, as it is stored on disk.
  """
  _check_stride_args(target_fps, frame_stride)
  if not target_fps:
    return float(frame_stride)
  return float(np.float64(np.float32(src_fps)) / np.float64(target_fps))


def clip_span_np(stride: float, num_out: int) -> int:
  """Number of source frames a clip covers: floor((num_out - 1) * stride + 0.5) + 1."""
  _check_count("num_out", num_out)
  return int(math.floor((num_out - 1) * float(stride) + 0.5)) + 1


def clip_indices_np(num_frames: int, stride: float, num_out: int, start: int = 0) -> np.ndarray:
  """int32 [num_out]: `(start + floor(i * stride + 0.5)) mod num_frames`."""
  _check_count("num_frames", num_frames)
  _check_count("num_out", num_out)
  offsets = np.floor(np.arange(num_out, dtype=np.float64) * np.float64(stride) + 0.5)
  return ((int(start) + offsets.astype(np.int64)) % int(num_frames)).astype(np.int32)


def clip_positions_np(indices, stride: float) -> np.ndarray:
  """int64 [..., T]: the clips' source frames `indices` [..., T] (dense sampling) unwrapped,
  `indices[..., 0] + floor(i * stride + 0.5)`: frame i is `positions mod num_frames`, and a
  step that passes a multiple of num_frames wraps around the video's end."""
  indices = np.asarray(indices, np.int64)
  num_out = indices.shape[-1]
  offsets = np.floor(np.arange(num_out, dtype=np.float64) * np.float64(stride) + 0.5)
  return indices[..., :1] + offsets.astype(np.int64)


def max_start_np(num_frames: int, stride: float, num_out: int) -> int:
  """Largest start keeping the clip inside the video: max(0, num_frames - span)."""
  return max(0, int(num_frames) - clip_span_np(stride, num_out))


def train_start_np(num_frames: int, stride: float, num_out: int, rng: np.random.Generator) -> int:
  """A start drawn uniformly from [0, max_start]."""
  return int(rng.integers(0, max_start_np(num_frames, stride, num_out) + 1))


def eval_starts_np(num_frames: int, stride: float, num_out: int, num_clips: int = 1) -> np.ndarray:
  """int32 [num_clips]: centre start for one clip, else `round(k * max_start / (K - 1))`."""
  _check_count("num_clips", num_clips)
  m = max_start_np(num_frames, stride, num_out)
  if num_clips == 1:
    return np.array([m // 2], np.int32)
  k = np.arange(num_clips, dtype=np.float64)
  return np.round(k * np.float64(m) / np.float64(num_clips - 1)).astype(np.int32)


def eval_indices_np(num_frames: int, stride: float, num_out: int, num_clips: int = 1) -> np.ndarray:
  """int32 [num_clips, num_out]: the evaluation clips' source indices."""
  return np.stack(
    [
      clip_indices_np(num_frames, stride, num_out, s)
      for s in eval_starts_np(num_frames, stride, num_out, num_clips)
    ]
  )


def segment_train_indices_np(num_frames: int, num_out: int, rng: np.random.Generator) -> np.ndarray:
  """int32 [num_out]: one random frame per segment (VideoMAE SSv2 training)."""
  _check_count("num_frames", num_frames)
  _check_count("num_out", num_out)
  i = np.arange(num_out, dtype=np.int64)
  width = num_frames // num_out
  if width == 0:
    return (i * num_frames // num_out).astype(np.int32)
  return (i * width + rng.integers(0, width, size=num_out)).astype(np.int32)


def segment_eval_indices_np(num_frames: int, num_out: int, num_clips: int = 2) -> np.ndarray:
  """int32 [num_clips, num_out]: clip k takes `int(i·tick + k·tick/K)`, tick = n / T."""
  _check_count("num_frames", num_frames)
  _check_count("num_out", num_out)
  _check_count("num_clips", num_clips)
  tick = np.float64(num_frames) / np.float64(num_out)
  i = np.arange(num_out, dtype=np.float64)
  k = np.arange(num_clips, dtype=np.float64)[:, None]
  return np.floor(i * tick + k * tick / num_clips).astype(np.int32)


def check_target_fps_choices(target_fps) -> tuple[float, ...] | None:
  """None/0 → None (fixed stride); a number or a non-empty list of numbers > 0 → a tuple."""
  if target_fps is None or (np.isscalar(target_fps) and not target_fps):
    return None
  choices = tuple(float(f) for f in np.atleast_1d(np.asarray(target_fps, dtype=np.float64)))
  if not choices or any(not f > 0 for f in choices):
    raise ValueError(
      f"target_fps must be None, 0, a number > 0 or a list of numbers > 0, got {target_fps}"
    )
  return choices


# ------------------------------------------------------------------------------------- tf


def stride_for(src_fps, target_fps: float | None, frame_stride: int = 4) -> tf.Tensor:
  """float64 scalar: `src_fps / target_fps`, or `frame_stride` when `target_fps` is None/0."""
  _check_stride_args(target_fps, frame_stride)
  if not target_fps:
    return tf.constant(float(frame_stride), tf.float64)
  src = tf.cast(tf.cast(src_fps, tf.float32), tf.float64)
  return src / tf.constant(float(target_fps), tf.float64)


def clip_span(stride, num_out: int) -> tf.Tensor:
  """int32 scalar: floor((num_out - 1) * stride + 0.5) + 1."""
  _check_count("num_out", num_out)
  stride = tf.cast(stride, tf.float64)
  return tf.cast(tf.floor(float(num_out - 1) * stride + 0.5), tf.int32) + 1


def _offsets(stride, num_out: int) -> tf.Tensor:
  _check_count("num_out", num_out)
  stride = tf.cast(stride, tf.float64)
  return tf.cast(tf.floor(tf.range(num_out, dtype=tf.float64) * stride + 0.5), tf.int64)


def _wrap(idx, num_frames) -> tf.Tensor:
  return tf.cast(tf.math.floormod(idx, tf.cast(num_frames, tf.int64)), tf.int32)


def clip_indices(num_frames, stride, num_out: int, start=0) -> tf.Tensor:
  """int32 [num_out]: `(start + floor(i * stride + 0.5)) mod num_frames`."""
  return _wrap(tf.cast(start, tf.int64) + _offsets(stride, num_out), num_frames)


def clip_positions(indices, stride) -> tf.Tensor:
  """int64 [..., T]: `indices` [..., T] (dense sampling) unwrapped (`clip_positions_np`); the
  codec motion of a clip sums the stored fields between consecutive positions."""
  indices = tf.cast(indices, tf.int64)
  return indices[..., :1] + _offsets(stride, int(indices.shape[-1]))


def max_start(num_frames, stride, num_out: int) -> tf.Tensor:
  """int32 scalar: max(0, num_frames - span)."""
  return tf.maximum(0, tf.cast(num_frames, tf.int32) - clip_span(stride, num_out))


def train_start(num_frames, stride, num_out: int, seed) -> tf.Tensor:
  """int32 scalar drawn uniformly from [0, max_start] with a stateless `seed` ([2] int)."""
  hi = max_start(num_frames, stride, num_out)
  return tf.random.stateless_uniform([], seed, minval=0, maxval=hi + 1, dtype=tf.int32)


def eval_starts(num_frames, stride, num_out: int, num_clips: int = 1) -> tf.Tensor:
  """int32 [num_clips]: centre start for one clip, else `round(k * max_start / (K - 1))`."""
  _check_count("num_clips", num_clips)
  m = max_start(num_frames, stride, num_out)
  if num_clips == 1:
    return tf.reshape(m // 2, [1])
  k = tf.range(num_clips, dtype=tf.float64)
  return tf.cast(tf.round(k * tf.cast(m, tf.float64) / float(num_clips - 1)), tf.int32)


def eval_indices(num_frames, stride, num_out: int, num_clips: int = 1) -> tf.Tensor:
  """int32 [num_clips, num_out]: the evaluation clips' source indices."""
  starts = tf.cast(eval_starts(num_frames, stride, num_out, num_clips), tf.int64)
  return _wrap(starts[:, None] + _offsets(stride, num_out)[None, :], num_frames)


def draw_target_fps(choices, seed) -> tf.Tensor:
  """float64 scalar: one of `choices` (a non-empty sequence) drawn uniformly with `seed`."""
  choices = tf.constant(list(choices), tf.float64)
  k = tf.random.stateless_uniform([], seed, minval=0, maxval=tf.shape(choices)[0], dtype=tf.int32)
  return choices[k]


def stride_from_fps(src_fps, target_fps) -> tf.Tensor:
  """float64 scalar `src_fps / target_fps` for a tensor `target_fps` (src rounded to float32)."""
  src = tf.cast(tf.cast(src_fps, tf.float32), tf.float64)
  return src / tf.cast(target_fps, tf.float64)


def segment_train_indices(num_frames, num_out: int, seed) -> tf.Tensor:
  """int32 [num_out]: one random frame per segment (see `segment_train_indices_np`)."""
  _check_count("num_out", num_out)
  n = tf.cast(num_frames, tf.int64)
  i = tf.range(num_out, dtype=tf.int64)
  width = n // num_out
  offsets = tf.random.stateless_uniform(
    [num_out], seed, minval=0, maxval=tf.maximum(width, 1), dtype=tf.int64
  )
  return tf.cast(tf.where(width > 0, i * width + offsets, i * n // num_out), tf.int32)


def segment_eval_indices(num_frames, num_out: int, num_clips: int = 2) -> tf.Tensor:
  """int32 [num_clips, num_out]: clip k takes `int(i·tick + k·tick/K)`, tick = n / T."""
  _check_count("num_out", num_out)
  _check_count("num_clips", num_clips)
  tick = tf.cast(num_frames, tf.float64) / float(num_out)
  i = tf.range(num_out, dtype=tf.float64)[None, :]
  k = tf.range(num_clips, dtype=tf.float64)[:, None]
  return tf.cast(tf.floor(i * tick + k * tick / float(num_clips)), tf.int32)


# ------------------------------------------------------------------------- frame selection

FRAME_SELECTION = ("", "segment", "global")


def check_frame_selection(frame_selection: str, window: int, num_frames: int, group: int) -> None:
  """ValueError naming the key unless the frame-selection settings fit `num_frames`."""
  if frame_selection not in FRAME_SELECTION:
    raise ValueError(
      f"frame_selection must be one of {FRAME_SELECTION} ('' = off), got {frame_selection!r}"
    )
  if not frame_selection:
    return
  if int(window) != window or window < 2:
    raise ValueError(f"frame_selection_window must be an integer >= 2, got {window}")
  if int(group) != group or group < 1 or num_frames % group:
    raise ValueError(
      f"frame_selection_group ({group}, the tubelet's frames) must be an integer >= 1 that "
      f"divides num_frames ({num_frames})"
    )


def frame_change(clips) -> tf.Tensor:
  """int64 [B, W]: Σ |x_i − x_{i−1}| per frame of the uint8 `clips` [B, W, H, W, C] (c_0 = c_1),
  exact; `mgvm.masking.frames.frame_change` is the reference."""
  x = tf.cast(clips, tf.int32)
  rows = tf.reduce_sum(tf.abs(x[:, 1:] - x[:, :-1]), axis=[3, 4])  # int32: exact per row
  d = tf.reduce_sum(tf.cast(rows, tf.int64), axis=2)
  return tf.concat([d[:, :1], d], axis=1)


def select_frame_positions(change, num_frames: int, mode: str, group: int = 2) -> tf.Tensor:
  """int32 [B, T]: ascending positions in the window chosen from `change` [B, W] in groups of
  `group` consecutive frames; the rule of `mgvm.masking.frames.select_frame_indices`."""
  window = int(change.shape[1])
  if mode not in FRAME_SELECTION[1:]:
    raise ValueError(f"frame_selection must be one of {FRAME_SELECTION[1:]}, got {mode!r}")
  if num_frames % group or window % group or (mode == "segment" and window % num_frames):
    raise ValueError(
      f"cannot select {num_frames} frames in groups of {group} from a window of {window}"
    )
  picks, groups = num_frames // group, window // group
  scores = tf.reduce_sum(tf.reshape(change, [-1, groups, group]), axis=2)
  if mode == "segment":
    length = groups // picks
    best = tf.math.top_k(tf.reshape(scores, [-1, picks, length]), 1).indices[..., 0]
    ids = best + tf.range(picks) * length  # top_k: the lower index on ties
  else:
    top = tf.math.top_k(scores[:, 1:], picks - 1).indices + 1
    ids = tf.sort(tf.concat([tf.zeros_like(top[:, :1]), top], axis=1), axis=1)
  frames = ids[:, :, None] * group + tf.range(group)
  return tf.reshape(tf.cast(frames, tf.int32), [-1, num_frames])
