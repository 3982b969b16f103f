"""Information-driven frame selection (VideoMS, docs/algorithms.md §3.4): T of a window's frames.

The VideoMS / EVEREST paper describes choosing "information-intensive" frames but never released
it; this is mgvm's rule. A frame's energy is its mean absolute difference to the previous frame
(`e_i = mean |x_i − x_{i−1}|`, `e_0 = e_1`): frames where something changes carry new
information, repeated frames do not. Two static-shape selections, both in temporal order:
- `"segment"` (default): the window is cut into T equal segments and each gives its
  highest-energy frame (the earliest on ties): coverage of the whole window is kept.
- `"global"`: frame 0 plus the T − 1 highest-energy other frames, sorted by time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("segment", "global")


def frame_energy(video: jax.Array) -> jax.Array:
  """float32 [B, W]: mean |x_i − x_{i−1}| per frame of `video` [B, W, H, W, C]; e_0 = e_1."""
  if video.ndim != 5 or video.shape[1] < 2:
    raise ValueError(f"video must be [B, W, H, W, C] with W >= 2 frames, got {video.shape}")
  x = video.astype(jnp.float32)
  d = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(2, 3, 4))
  return jnp.concatenate([d[:, :1], d], axis=1)


def select_frame_indices(energy: jax.Array, num_frames: int, mode: str = "segment") -> jax.Array:
  """int32 [B, T] ascending indices into the window, chosen from `energy` [B, W]."""
  b, window = energy.shape
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if not 1 <= num_frames <= window:
    raise ValueError(f"cannot select {num_frames} frames from a window of {window}")
  if mode == "segment":
    if window % num_frames:
      raise ValueError(
        f"segment selection needs the window ({window}) to be a multiple of "
        f"num_frames ({num_frames})"
      )
    length = window // num_frames
    best = jnp.argmax(energy.reshape(b, num_frames, length), axis=-1)  # first max on ties
    return (best + jnp.arange(num_frames) * length).astype(jnp.int32)
  rest = energy[:, 1:]
  _, top = jax.lax.top_k(rest, num_frames - 1)
  ids = jnp.concatenate([jnp.zeros((b, 1), jnp.int32), top.astype(jnp.int32) + 1], axis=1)
  return jnp.sort(ids, axis=1)


def select_frames(video: jax.Array, num_frames: int, mode: str = "segment"):
  """(frames [B, T, H, W, C], indices [B, T]): the selected frames of `video` [B, W, H, W, C]."""
  ids = select_frame_indices(frame_energy(video), num_frames, mode)
  return jnp.take_along_axis(video, ids[:, :, None, None, None], axis=1), ids
