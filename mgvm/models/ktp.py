"""Keyframe-centric token pruning (EVAD's KTP, docs/algorithms.md §4.2) over a `VideoViT`'s blocks.

The encoder's tokens are reordered so the keyframe slice (slice T'//2) comes first; a pruning
block keeps every keyframe token and the non-keyframe tokens that receive the most attention
(mean over heads and over all queries, keyframe queries weighted by `enhanced_weight`), between
the attention residual and the MLP. The original token index of every surviving non-keyframe
token travels with it (`ids`), so the full grid can be rebuilt by index afterwards.
Counts are Python ints (`ceil(keep_rate * N_current)`), so shapes stay static.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.models.vit import Attention, Block, VideoViT


def keyframe_slice(grid: Sequence[int]) -> int:
  """The keyframe's temporal slice: T'//2 (the clip centre, raw frames T/2 and T/2 + 1)."""
  return int(grid[0]) // 2


def keyframe_order(grid: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """(keyframe token ids [h·w], other token ids [N − h·w] ascending) in the (t, h, w) order."""
  t, h, w = (int(g) for g in grid)
  k = keyframe_slice(grid)
  key = np.arange(k * h * w, (k + 1) * h * w, dtype=np.int32)
  others = np.concatenate([np.arange(0, k * h * w), np.arange((k + 1) * h * w, t * h * w)])
  return key, others.astype(np.int32)


def default_prune_blocks(depth: int) -> tuple[int, ...]:
  """EVAD's pruning blocks: 3, 6, 9 for 12 blocks (ViT-B), 6, 12, 18 for 24 (ViT-L)."""
  q = depth // 4
  return tuple(q * i for i in (1, 2, 3)) if q else ()


def default_feature_blocks(depth: int) -> tuple[int, ...]:
  """Blocks whose keyframe tokens feed the FPN: 2, 5, 8, 11 (ViT-B), 5, 11, 17, 23 (ViT-L)."""
  q = max(depth // 4, 1)
  return tuple(min(q * i - 1, depth - 1) for i in (1, 2, 3, 4))


def sequence_lengths(
  num_tokens: int, num_key: int, depth: int, keep_rates: dict[int, float]
) -> list[int]:
  """Tokens entering the MLP of each block: `ceil(rate · N)` at a pruning block, but never
  fewer than the `num_key` keyframe tokens (where the reference's top-k would fail, e.g. keep
  0.6 three times on a 4-slice grid, only the keyframe tokens go on)."""
  lengths, n = [], num_tokens
  for block in range(depth):
    rate = keep_rates.get(block, 1.0)
    if not 0.0 < rate <= 1.0:
      raise ValueError(f"keep rate of block {block} must be in (0, 1], got {rate}")
    n = min(n, max(math.ceil(rate * n), num_key))
    lengths.append(n)
  return lengths


def attention_with_probs(attn: Attention, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`attn(x)` computed explicitly: (output [B, N, D], probabilities [B, heads, N, N] float32)."""
  b, n, d = x.shape
  hd = d // attn.num_heads
  q, k, v = (a.transpose(0, 2, 1, 3) for a in attn.heads(x))  # [B, H, N, hd]
  logits = jnp.einsum("bhqd,bhkd->bhqk", q * hd**-0.5, k).astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v.dtype), v)
  return attn.proj(out.transpose(0, 2, 1, 3).reshape(b, n, d)), probs


def keyframe_scores(probs: jax.Array, num_key: int, enhanced_weight: float = 1.0) -> jax.Array:
  """[B, N − num_key]: attention each non-keyframe token receives, averaged over all queries
  (the first `num_key` — keyframe — query rows weighted by `enhanced_weight`) and heads."""
  weights = jnp.ones((probs.shape[2],), probs.dtype).at[:num_key].set(enhanced_weight)
  cols = probs[..., num_key:] * weights[None, None, :, None]
  return cols.mean(axis=2).mean(axis=1)


def ktp_block(
  block: Block,
  x: jax.Array,
  ids: jax.Array,
  *,
  num_key: int,
  keep: int,
  enhanced_weight: float = 1.0,
  deterministic: bool = True,
  rngs: nnx.Rngs | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One `Block` pruning to `keep` tokens after its attention residual.

  x [B, N, D] with the `num_key` keyframe tokens first; ids [B, N − num_key] the original
  index of each non-keyframe token. Returns (x [B, keep, D], ids [B, keep − num_key]); the
  kept non-keyframe tokens are in descending score order (as the reference's top-k).
  """
  y, probs = attention_with_probs(block.attn, block.norm1(x))
  if block.gamma_1 is not None:
    y = y * block.gamma_1[...].astype(y.dtype)
  x = x + block.drop_path(y, deterministic=deterministic, rngs=rngs)
  if keep < x.shape[1]:
    scores = keyframe_scores(probs, num_key, enhanced_weight)
    _, top = jax.lax.top_k(scores, keep - num_key)
    others = jnp.take_along_axis(x[:, num_key:], top[..., None], axis=1)
    x = jnp.concatenate([x[:, :num_key], others], axis=1)
    ids = jnp.take_along_axis(ids, top, axis=1)
  y = block.mlp(block.norm2(x))
  if block.gamma_2 is not None:
    y = y * block.gamma_2[...].astype(y.dtype)
  return x + block.drop_path(y, deterministic=deterministic, rngs=rngs), ids


def encode_keyframe_first(
  encoder: VideoViT,
  tokens: jax.Array,
  grid: Sequence[int],
  *,
  keep_rates: dict[int, float],
  enhanced_weight: float = 1.0,
  feature_blocks: Sequence[int] = (),
  deterministic: bool = True,
  rngs: nnx.Rngs | None = None,
):
  """Runs `encoder`'s blocks with KTP on patch embeddings `tokens` [B, N, D] of a `grid` clip.

  Returns (x [B, K, D] after the final norm, keyframe tokens first; ids [B, K − h·w] original
  indices of the rest; keyframe maps [B, h, w, D] after each of `feature_blocks`). Blocks not
  in `keep_rates` keep the fused attention.
  """
  _, h, w = grid
  b, n, d = tokens.shape
  num_key = h * w
  lengths = sequence_lengths(n, num_key, len(encoder.blocks), keep_rates)
  key_ids, other_ids = keyframe_order(grid)
  x = tokens + jnp.asarray(encoder.positions(n), tokens.dtype)[None]
  x = jnp.concatenate([x[:, key_ids], x[:, other_ids]], axis=1)
  ids = jnp.broadcast_to(jnp.asarray(other_ids), (b, other_ids.size))
  maps = []
  for i, block in enumerate(encoder.blocks):
    if lengths[i] < x.shape[1]:
      x, ids = ktp_block(
        block,
        x,
        ids,
        num_key=num_key,
        keep=lengths[i],
        enhanced_weight=enhanced_weight,
        deterministic=deterministic,
        rngs=rngs,
      )
    else:
      x = block(x, deterministic=deterministic, rngs=rngs)
    if i in feature_blocks:
      maps.append(x[:, :num_key].reshape(b, h, w, d))
  if encoder.norm is not None:
    x = encoder.norm(x)
  return x, ids, maps


def rebuild_grid(
  kept: jax.Array,
  ids: jax.Array,
  grid: Sequence[int],
  fill: jax.Array,
  *,
  official_order: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """Scatters kept tokens [B, K, C] (keyframe first) back to the full [B, N, C] grid.

  Non-keyframe token j goes to position `ids[:, j]`; dropped positions hold `fill` [C].
  `official_order=True` reproduces the official code's defect (docs/algorithms.md §4.2): the tokens
  land, in their current (score) order, on the kept positions sorted ascending. Returns
  (grid [B, N, C], the position each kept token was put at [B, K]).
  """
  b, k, c = kept.shape
  key_ids, _ = keyframe_order(grid)
  n = int(np.prod(grid))
  place = jnp.sort(ids, axis=1) if official_order else ids
  positions = jnp.concatenate(
    [jnp.broadcast_to(jnp.asarray(key_ids), (b, key_ids.size)), place.astype(jnp.int32)], axis=1
  )
  full = jnp.broadcast_to(fill.astype(kept.dtype), (b, n, c))
  full = full.at[jnp.arange(b)[:, None], positions].set(kept)
  return full, positions
