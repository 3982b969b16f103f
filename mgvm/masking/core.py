"""Pieces shared by every masker: the `MaskOut` contract, static-shape index helpers,
build-time validation and the `Masker` callable returned by `mgvm.masking.build`.

Token index convention (docs/algorithms.md §0.2): for a token grid `(T', h, w)` the token at slice `t`,
row `i`, column `j` has index `n = t·h·w + i·w + j`. Every count (kept, target tokens) is a
Python int known before tracing, so maskers compile once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Grid = tuple[int, int, int]


class MaskOut(NamedTuple):
  """What every masker returns; `K`, `M` and `N` are static Python ints."""

  ids_keep: jax.Array  # [B, K] int32 ascending, tokens the encoder sees
  ids_target: jax.Array  # [B, M] int32 ascending, tokens the decoder reconstructs
  mask: jax.Array  # [B, N] bool, True where hidden from the encoder


@dataclasses.dataclass(frozen=True, eq=False)
class Masker:
  """A built masker: `masker(key, video, tokens, motion=None, motion_valid=None) -> MaskOut`.

  A plain Python object (hashed by identity), so it can be closed over inside `jax.jit`.
  `num_keep` (K) and `num_target` (M) are the static output widths.

  `needs_motion`: the masker reads the codec motion field (`motion` [B, T, h, w, 2], model
  pixels from frame k − 1 to k, and optionally `motion_valid` [B, T, h, w], the share of
  codec-covered blocks; docs/algorithms.md §6); calling it without `motion` fails naming the
  kind. A masker that does not need motion ignores it, so callers may always pass it.

  `variable_length`: a compressor that keeps a different number of tokens per clip (RLT's
  threshold form). `ids_keep` [B, K] is then padded to the static budget K: its first
  `kept_lengths(out)[b]` entries are the kept tokens (ascending), the rest padding (dropped
  tokens, ascending), which attention must ignore (`VideoViT.encode(kv_lengths=)`); `mask` is
  False exactly at the kept tokens.
  """

  kind: str
  grid: Grid
  num_keep: int
  num_target: int
  fn: Callable[..., MaskOut] = dataclasses.field(repr=False)
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  needs_motion: bool = False
  variable_length: bool = False

  @property
  def num_tokens(self) -> int:
    """N = T'·h·w."""
    return math.prod(self.grid)

  def __call__(
    self,
    key: jax.Array,
    video: jax.Array | None = None,
    tokens: jax.Array | None = None,
    motion: jax.Array | None = None,
    motion_valid: jax.Array | None = None,
  ) -> MaskOut:
    if not self.needs_motion:
      return self.fn(key, video, tokens)
    if motion is None:
      raise ValueError(
        f"masking kind {self.kind!r} ({describe(self.params)}) reads the codec motion field: "
        "call masker(key, video, tokens, motion=...) with motion [B, T, h, w, 2] (the input "
        "pipeline gives batch['motion'] with make_dataset(..., motion=True))"
      )
    return self.fn(key, video, tokens, motion=motion, motion_valid=motion_valid)


def describe(params: Mapping[str, Any]) -> str:
  """`key=value, ...` of the options that make a masker read motion (for error messages)."""
  shown = {k: v for k, v in params.items() if k in ("motion", "flow", "compensate_camera")}
  return ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "codec motion"


def kept_lengths(out: MaskOut) -> jax.Array:
  """int32 [B]: tokens each clip keeps, `(~mask).sum()` (the real entries of a
  `variable_length` compressor's padded `ids_keep`; `num_keep` for every other masker)."""
  return jnp.sum(~out.mask, axis=1).astype(jnp.int32)


# ----------------------------------------------------------------------------- traced helpers


def batch_size(
  video: jax.Array | None, tokens: jax.Array | None, num_tokens: int | None = None
) -> int:
  """Static batch size from `video` [B, T, H, W, 3] or `tokens` [B, N, D] (whichever is given)."""
  if video is None and tokens is None:
    raise ValueError(
      "a masker needs `video` [B, T, H, W, 3] or `tokens` [B, N, D] to know the "
      "batch size; both are None"
    )
  if tokens is not None:
    if tokens.ndim != 3:
      raise ValueError(f"tokens must be [B, N, D]; got shape {tokens.shape}")
    if num_tokens is not None and tokens.shape[1] != num_tokens:
      raise ValueError(
        f"tokens hold {tokens.shape[1]} tokens but the masker's grid has {num_tokens}"
      )
  if video is not None and tokens is not None and video.shape[0] != tokens.shape[0]:
    raise ValueError(f"video batch {video.shape[0]} != tokens batch {tokens.shape[0]}")
  return int((video if video is not None else tokens).shape[0])


def split_by_scores(scores: jax.Array, num_keep: int) -> tuple[jax.Array, jax.Array]:
  """Split token ids by score: the `num_keep` highest-scoring ids and the rest.

  scores: [B, N] (float or int). Ties go to the lower index. Returns
  `(ids_keep [B, num_keep], ids_rest [B, N - num_keep])`, both int32 and ascending.
  """
  n = scores.shape[-1]
  if not 0 <= num_keep <= n:
    raise ValueError(f"num_keep={num_keep} must lie in [0, {n}]")
  _, order = jax.lax.top_k(scores, n)  # descending, stable
  order = order.astype(jnp.int32)
  return jnp.sort(order[:, :num_keep], axis=-1), jnp.sort(order[:, num_keep:], axis=-1)


def mask_from_ids(ids_keep: jax.Array, num_tokens: int) -> jax.Array:
  """[B, N] bool mask, True everywhere except at `ids_keep` [B, K]."""
  one_row = lambda ids: jnp.ones((num_tokens,), jnp.bool_).at[ids].set(False)
  return jax.vmap(one_row)(ids_keep)


def tile_over_time(spatial_ids: jax.Array, grid: Grid) -> jax.Array:
  """Repeat per-slice ids [B, k] (ascending, in [0, h·w)) over all T' slices -> [B, T'·k].

  The result is ascending because slices are laid out one after another.
  """
  t, h, w = grid
  offsets = jnp.arange(t, dtype=jnp.int32)[:, None] * (h * w)
  ids = offsets[None] + spatial_ids[:, None, :]
  return ids.reshape(spatial_ids.shape[0], -1).astype(jnp.int32)


# ----------------------------------------------------------------------------- interop


def from_boolean_mask(mask: Any) -> MaskOut:
  """MaskOut from a concrete [B, N] boolean mask (True = masked, e.g. HF `bool_masked_pos`).

  `ids_keep` = the False positions, `ids_target` = the True positions, both ascending.
  Runs outside `jit` on numpy or jax arrays; every row must mask the same number of tokens.
  """
  try:
    arr = np.asarray(mask)
  except jax.errors.TracerArrayConversionError as e:
    raise TypeError("from_boolean_mask needs a concrete array; call it outside jax.jit") from e
  if arr.ndim != 2:
    raise ValueError(f"from_boolean_mask expects a 2-D [B, N] mask; got shape {arr.shape}")
  if arr.dtype != np.bool_:
    if not np.isin(arr, (0, 1)).all():
      raise ValueError("from_boolean_mask expects a boolean (or 0/1) mask")
    arr = arr.astype(bool)
  counts = arr.sum(axis=1)
  bad = np.flatnonzero(counts != counts[0]) if arr.shape[0] else []
  if len(bad):
    r = int(bad[0])
    raise ValueError(
      f"row 0 masks {int(counts[0])} tokens, row {r} masks {int(counts[r])}; "
      "every row must mask the same number"
    )
  b, n = arr.shape
  m = int(counts[0]) if b else 0
  ids_target = np.nonzero(arr)[1].reshape(b, m)  # row-major: ascending within a row
  ids_keep = np.nonzero(~arr)[1].reshape(b, n - m)
  return MaskOut(
    jnp.asarray(ids_keep, jnp.int32), jnp.asarray(ids_target, jnp.int32), jnp.asarray(arr)
  )


# ----------------------------------------------------------------------------- validation


def check_grid(grid: Any) -> Grid:
  """Validate a token grid `(T', h, w)` of positive ints; returns it as a tuple of ints."""
  try:
    dims = tuple(grid)
  except TypeError:
    raise ValueError(f"grid must be (T', h, w); got {grid!r}") from None
  if len(dims) != 3:
    raise ValueError(f"grid must be (T', h, w) with 3 entries; got {grid!r}")
  out = []
  for d in dims:
    if isinstance(d, bool):
      raise ValueError(f"grid entries must be ints; got {grid!r}")
    try:
      d = operator.index(d)
    except TypeError:
      raise ValueError(f"grid entries must be ints; got {grid!r}") from None
    if d < 1:
      raise ValueError(f"grid entries must be >= 1; got {grid!r}")
    out.append(int(d))
  return tuple(out)


def check_fraction(name: str, value: Any) -> float:
  """Validate a ratio in [0, 1); returns it as a float."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must lie in [0, 1); got {value}")
  return float(value)


def check_split(kind: str, ratio: float, total: int, num_masked: int, what: str) -> None:
  """Fail when `int(ratio * total)` masks nothing or hides everything."""
  if num_masked == 0:
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} masks int({ratio} * {total}) = 0 of "
      f"the {total} {what}; no token would be masked"
    )
  if num_masked >= total:
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} masks all {total} {what}; "
      "no visible token would be left"
    )
