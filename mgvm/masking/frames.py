"""Information-driven frame selection (VideoMS, docs/algorithms.md §3.4): T of a window's frames.

The VideoMS / EVEREST paper describes choosing "information-intensive" frames but never released
it; this is mgvm's rule (experimental). A frame's change is the sum of its absolute differences
to the previous frame, `c_i = Σ |x_i − x_{i−1}|` over pixels and channels (`c_0 = c_1`); its
energy is the mean, `e_i = c_i / (H·W·C)`: frames where something changes carry new
information, repeated frames do not. Selection works on groups of `group` consecutive frames
(the window cut at multiples of `group`), a group scoring the sum of its frames' values, so a
tubelet of `group` frames still covers consecutive frames (`group=2` keeps tubelet pairs
adjacent; `group=1` selects single frames). Two static-shape selections of T/group groups, both
in temporal order:
- `"segment"` (default): the window is cut into T/group equal segments and each gives its
  highest-scoring group (the earliest on ties): coverage of the whole window is kept.
- `"global"`: group 0 plus the T/group − 1 highest-scoring other groups, sorted by time
  (the earliest on ties).

Integer clips (uint8) are compared exactly: `frame_change` sums them in int32 (exact up to
2³¹/255 values a frame, about 1670² RGB pixels). The tf.data pipeline applies the same rule on
the host (`mgvm.data.sampling.frame_change` / `select_frame_positions`, tested equal to these).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("segment", "global")


def frame_change(video: jax.Array) -> jax.Array:
  """[B, W]: Σ |x_i − x_{i−1}| per frame of `video` [B, W, H, W, C], c_0 = c_1; int32 for an
  integer clip (exact), float32 otherwise."""
  if video.ndim != 5 or video.shape[1] < 2:
    raise ValueError(f"video must be [B, W, H, W, C] with W >= 2 frames, got {video.shape}")
  integer = jnp.issubdtype(video.dtype, jnp.integer)
  x = video.astype(jnp.int32 if integer else jnp.float32)
  d = jnp.sum(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(2, 3, 4))
  return jnp.concatenate([d[:, :1], d], axis=1)


def frame_energy(video: jax.Array) -> jax.Array:
  """float32 [B, W]: mean |x_i − x_{i−1}| per frame of `video` [B, W, H, W, C]; e_0 = e_1."""
  count = video.shape[2] * video.shape[3] * video.shape[4] if video.ndim == 5 else 1
  return frame_change(video).astype(jnp.float32) / jnp.float32(count)


def check_selection(window: int, num_frames: int, mode: str, group: int = 1) -> None:
  """Raise ValueError unless `num_frames` frames in groups of `group` can come from `window`."""
  if mode not in MODES:
    raise ValueError(f"frame selection mode must be one of {MODES}, got {mode!r}")
  if int(group) != group or group < 1:
    raise ValueError(f"frame selection group must be an integer >= 1, got {group}")
  if num_frames % group or window % group:
    raise ValueError(
      f"frame selection in groups of {group} needs num_frames ({num_frames}) and the window "
      f"({window}) to be multiples of {group}"
    )
  if not 1 <= num_frames <= window:
    raise ValueError(f"cannot select {num_frames} frames from a window of {window}")
  if mode == "segment" and window % num_frames:
    raise ValueError(
      f"segment selection needs the window ({window}) to be a multiple of num_frames ({num_frames})"
    )


def select_frame_indices(
  energy: jax.Array, num_frames: int, mode: str = "segment", *, group: int = 1
) -> jax.Array:
  """int32 [B, T] ascending indices into the window, chosen from `energy` [B, W] (or the
  changes `frame_change`: the same order) in groups of `group` consecutive frames."""
  b, window = energy.shape
  check_selection(window, num_frames, mode, group)
  scores = energy.reshape(b, window // group, group).sum(axis=-1)  # [B, groups]
  picks = num_frames // group
  if mode == "segment":
    length = scores.shape[1] // picks
    _, best = jax.lax.top_k(scores.reshape(b, picks, length), 1)  # first max on ties
    ids = best[..., 0] + jnp.arange(picks) * length
  else:
    _, top = jax.lax.top_k(scores[:, 1:], picks - 1)  # stable: the earlier of equal scores
    ids = jnp.sort(jnp.concatenate([jnp.zeros((b, 1), top.dtype), top + 1], axis=1), axis=1)
  frames = ids[:, :, None] * group + jnp.arange(group)
  return frames.reshape(b, num_frames).astype(jnp.int32)


def select_frames(video: jax.Array, num_frames: int, mode: str = "segment", *, group: int = 1):
  """(frames [B, T, H, W, C], indices [B, T]): the selected frames of `video` [B, W, H, W, C]."""
  ids = select_frame_indices(frame_change(video), num_frames, mode, group=group)
  return jnp.take_along_axis(video, ids[:, :, None, None, None], axis=1), ids
