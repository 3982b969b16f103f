"""A compressor followed by a masker: which tokens exist, then which of those the encoder sees.

`{"kind": "tube", "ratio": 0.9, "compress": {"kind": "mgtc", "ratio": 0.25}}`: the compressor
(`mgvm.masking.motion`) keeps `Kc` tokens per clip; the masker ranks tokens by its own priority
(random: i.i.d. uniform per token; tube: one uniform draw per spatial position, shared by all
slices; mgmae: its warped mask-volume score per token) and the `V` highest-priority *kept*
tokens are visible, `V` being the masker's visible count on the full grid (random:
`random.random_counts`, tube: `T'·(h·w − int(ratio·h·w))`, mgmae: `T'·int(h·w·(1 − ratio))`).
The other `Kc − V` kept tokens are the reconstruction targets; dropped tokens are neither. Every
count is static. The masker's own options apply (random: `visible_rule`; mgmae: every option,
the selection being one global top-`V` whatever `topk_on_all` says, since the slices keep
different numbers of tokens).

EVEREST pre-training is `{"kind": "random", "ratio": 0.9, "compress": {"kind": "everest",
"ratio": 0.7}}`: 470 candidates of 1568 and, with random's default `visible_rule="auto"`,
EVEREST's `int((1 − 0.9)·1568)` = 156 visible and 314 targets as the reference;
`visible_rule="videomae"` gives VideoMAE's `N − int(0.9·N)` = 157 and 313.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

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


def _only(kind: str, options: dict, accepted: tuple[str, ...]) -> None:
  extra = sorted(set(options) - set(accepted))
  if extra:
    raise ValueError(
      f"masking kind {kind!r} with 'compress' does not accept key(s) {extra}; "
      f"accepted: {', '.join(['ratio', *accepted])}"
    )


def _random_options(options: dict, compressor: Masker) -> dict:
  _only("random", options, ("visible_rule",))
  rule = options.get("visible_rule", "auto")
  return {"visible_rule": random.resolve_visible_rule(rule, compressor.kind)}


def _tube_options(options: dict, compressor: Masker) -> dict:
  _only("tube", options, ())
  return {}


def _mgmae_options(options: dict, compressor: Masker) -> dict:
  _only("mgmae", options, mgmae.OPTIONS)
  return mgmae.check_options(**options)


class Priority(NamedTuple):
  """How a masker kind ranks the kept tokens.

  `priority(key, batch, grid, *, video, ratio, **options) -> [B, N]`;
  `counts(grid, ratio[, visible_rule]) -> (visible, masked)` on the full grid;
  `options(params, compressor) -> dict` checks the masker's options besides `ratio` (an unknown
  one raises) and resolves their defaults (random's "auto" rule from the compressor's kind).
  """

  priority: Callable[..., jax.Array]
  counts: Callable[..., tuple[int, int]]
  options: Callable[[dict, Masker], dict]


PRIORITIES = {
  "random": Priority(_random_priority, random.random_counts, _random_options),
  "tube": Priority(_tube_priority, random.tube_counts, _tube_options),
  "mgmae": Priority(mgmae.compose_priority, mgmae.mgmae_counts, _mgmae_options),
}


def build_composed(grid: Grid, kind: str, params: dict, compressor: Masker) -> Masker:
  """The masker `kind` (with `params`) restricted to the tokens `compressor` keeps."""
  if kind not in PRIORITIES:
    raise ValueError(
      f"masking kind {kind!r} cannot take 'compress'; kinds that can: "
      f"{', '.join(sorted(PRIORITIES))}"
    )
  params = dict(params)
  if "ratio" not in params:
    raise ValueError(f"masking kind {kind!r} with 'compress' needs key 'ratio'")
  ratio = check_fraction("ratio", params.pop("ratio"))
  if compressor.variable_length:
    raise ValueError(
      f"the {compressor.kind!r} compressor with {compressor.params} keeps a different number of "
      f"tokens per clip; a masker's 'compress' needs a fixed count (use form='topk')"
    )
  priority, counts, check = PRIORITIES[kind]
  options = check(params, compressor)
  count_options = {"visible_rule": options["visible_rule"]} if kind == "random" else {}
  num_visible, _ = counts(grid, ratio, **count_options)
  kept = compressor.num_keep
  if not 1 <= num_visible < kept:
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} leaves {num_visible} visible tokens "
      f"but the {compressor.kind!r} compressor keeps {kept}; the visible tokens "
      f"must be fewer than the kept ones (raise ratio or lower compress.ratio)"
    )

  prio_options = {k: v for k, v in options.items() if k not in ("visible_rule", "topk_on_all")}

  needs_motion = compressor.needs_motion or options.get("flow") == "codec"

  def fn(key, video, tokens, motion=None, motion_valid=None):
    b = batch_size(video, tokens, math.prod(grid))
    c_key, m_key = jax.random.split(key)
    compressed = compressor(c_key, video, tokens, motion=motion, motion_valid=motion_valid)
    ids_kept = compressed.ids_keep  # [B, Kc] ascending
    scores = priority(m_key, b, grid, video=video, ratio=ratio, motion=motion, **prio_options)
    rank = jnp.take_along_axis(scores, ids_kept, axis=1)
    visible, target = split_by_scores(rank, num_visible)  # positions in ids_kept, ascending
    ids_keep = jnp.take_along_axis(ids_kept, visible, axis=1)
    ids_target = jnp.take_along_axis(ids_kept, target, axis=1)
    return MaskOut(ids_keep, ids_target, mask_from_ids(ids_keep, math.prod(grid)))

  out_params = {
    "ratio": ratio,
    **options,
    "compress": {"kind": compressor.kind, **compressor.params},
  }
  return Masker(
    f"{kind}+{compressor.kind}",
    grid,
    num_visible,
    kept - num_visible,
    fn,
    out_params,
    needs_motion=needs_motion,
  )
