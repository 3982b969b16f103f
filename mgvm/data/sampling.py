"""FPS-aware temporal sampling: which source frames make a clip (DESIGN.md §3).

A clip of `num_out` frames taken with a (possibly fractional) `stride` from `start` uses

  index_i = (start + floor(i * stride + 0.5)) mod num_frames,   i = 0 .. num_out - 1

so it spans `span = floor((num_out - 1) * stride + 0.5) + 1` source frames; videos shorter than
the span wrap around (dmvr's behaviour). `stride = src_fps / target_fps`, or a fixed integer
`frame_stride` (VideoMAE's `sampling_rate`) when `target_fps` is None or 0.

Starts: training draws an integer uniformly from [0, max_start] with
`max_start = max(0, num_frames - span)`; evaluation takes the centre `max_start // 2`, or for
K clips `round(k * max_start / (K - 1))`, k = 0 .. K - 1.

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


def max_start_np(num_frames: int, stride: float, num_out: int) -> int:
  """Largest start keeping the clip inside the video: max(0, num_frames - span)."""
  return max(0, int(num_frames) - clip_span_np(stride, num_out))


def train_start_np(num_frames: int, stride: float, num_out: int,
                   rng: np.random.Generator) -> int:
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
  return np.stack([clip_indices_np(num_frames, stride, num_out, s)
                   for s in eval_starts_np(num_frames, stride, num_out, num_clips)])


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
