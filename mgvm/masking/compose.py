"""A compressor followed by a masker: which tokens exist, then which of those the encoder sees.

`{"kind": "tube", "ratio": 0.9, "compress": {"kind": "mgtc", "ratio": 0.25}}`: the compressor
(`mgvm.masking.motion`) keeps `Kc` tokens per clip; the masker ranks tokens by its own priority
(random: i.i.d. uniform per token; tube: one uniform draw per spatial position, shared by all
slices; mgmae: its warped mask-volume score per token, default options) and the `V` highest-priority *kept* tokens are visible, `V` being the masker's visible
count on the full grid (random: `N − int(ratio·N)`, tube: `T'·(h·w − int(ratio·h·w))`). The other
`Kc − V` kept tokens are the reconstruction targets; dropped tokens are neither. Every count is
static. EVEREST pre-training is `{"kind": "random", "ratio": 0.9, "compress": {"kind":
"everest", "ratio": 0.7}}`: 470 candidates of 1568 as the reference, 157 visible (the reference
takes `int(0.1·1568)` = 156; mgvm's random masker keeps VideoMAE's `N − int(0.9·N)`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mgvm.masking import mgmae, random
from mgvm.masking.core import (
  Grid,
  Masker,
  MaskOut,
  batch_size,
  check_fraction,
  mask_from_ids,
  split_by_scores,
)


def _random_priority(key, b: int, grid: Grid, **_) -> jax.Array:
  return jax.random.uniform(key, (b, math.prod(grid)))


def _tube_priority(key, b: int, grid: Grid, **_) -> jax.Array:
  t, h, w = grid
  return jnp.tile(jax.random.uniform(key, (b, h * w)), (1, t))


# kind -> (priority(key, batch, grid, *, video, ratio) -> [B, N],
#          counts(grid, ratio) -> (visible, masked))
PRIORITIES = {
  "random": (_random_priority, random.random_counts),
  "tube": (_tube_priority, random.tube_counts),
  "mgmae": (mgmae.compose_priority, mgmae.mgmae_counts),
}


def build_composed(grid: Grid, kind: str, params: dict, compressor: Masker) -> Masker:
  """The masker `kind` (with `params`) restricted to the tokens `compressor` keeps."""
  if kind not in PRIORITIES:
    raise ValueError(
      f"masking kind {kind!r} cannot take 'compress'; kinds that can: "
      f"{', '.join(sorted(PRIORITIES))}"
    )
  if set(params) != {"ratio"}:
    raise ValueError(
      f"masking kind {kind!r} with 'compress' takes only 'ratio'; got {sorted(params)}"
    )
  ratio = check_fraction("ratio", params["ratio"])
  priority, counts = PRIORITIES[kind]
  num_visible, _ = counts(grid, ratio)
  kept = compressor.num_keep
  if not 1 <= num_visible < kept:
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} leaves {num_visible} visible tokens "
      f"but the {compressor.kind!r} compressor keeps {kept}; the visible tokens "
      f"must be fewer than the kept ones (raise ratio or lower compress.ratio)"
    )

  def fn(key, video, tokens):
    b = batch_size(video, tokens, math.prod(grid))
    c_key, m_key = jax.random.split(key)
    ids_kept = compressor(c_key, video, tokens).ids_keep  # [B, Kc] ascending
    rank = jnp.take_along_axis(priority(m_key, b, grid, video=video, ratio=ratio), ids_kept, axis=1)
    visible, target = split_by_scores(rank, num_visible)  # positions in ids_kept, ascending
    ids_keep = jnp.take_along_axis(ids_kept, visible, axis=1)
    ids_target = jnp.take_along_axis(ids_kept, target, axis=1)
    return MaskOut(ids_keep, ids_target, mask_from_ids(ids_keep, math.prod(grid)))

  out_params = {"ratio": ratio, "compress": {"kind": compressor.kind, **compressor.params}}
  return Masker(f"{kind}+{compressor.kind}", grid, num_visible, kept - num_visible, fn, out_params)
