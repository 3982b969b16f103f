"""EVAD (docs/algorithms.md §4): a VideoViT with keyframe-centric token pruning, an actor localizer on
the keyframe tokens, and a context refinement decoder that classifies each actor's actions.

`EVAD(...)(video)` -> `(out, aux)`:
- `out["person_logits"]` [S, B, P, 2] (person, no-object) and `out["boxes"]` [S, B, P, 4]
  (xyxy, input pixels) of every localizer stage;
- `out["actions"]` [L, B, P, num_classes] action logits after every decoder block (sigmoid);
- `aux["kept_ids"]` [B, K − h·w] original indices of the kept non-keyframe tokens.

`image_hw` (call argument): the size of each clip's content, (H, W) or [B, 2] (default: the
whole input). Clips padded at the bottom / right (`data.resize="short_side"`) pass their
unpadded size, as the reference's `images_whwh`: the proposals start as the whole content,
boxes and RoIs are clipped to it.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm import ops
from mgvm.models import ktp
from mgvm.models.localizer import ActorLocalizer
from mgvm.models.vit import (
  Block,
  VideoViT,
  drop_path_rates,
  position_table,
  resolve_size,
  torch_linear,
)

# Context refinement decoder depth per encoder size (ViT-B 6 x 384, ViT-L 12 x 512).
DECODER_DEPTH = {"S": 6, "B": 6, "L": 12, "H": 12}


class ActionHead(nnx.Module):
  """`num_layers` x (Linear without bias, LayerNorm, ReLU), then Linear to the classes."""

  def __init__(
    self,
    dim: int,
    hidden: int,
    num_classes: int,
    num_layers: int = 1,
    *,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    widths = [dim] + [hidden] * num_layers
    self.layers = nnx.List(
      [
        torch_linear(a, b, use_bias=False, dtype=dtype, rngs=rngs)
        for a, b in zip(widths[:-1], widths[1:])
      ]
    )
    self.norms = nnx.List(
      [
        nnx.LayerNorm(hidden, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        for _ in range(num_layers)
      ]
    )
    self.out = torch_linear(hidden, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    for layer, norm in zip(self.layers, self.norms):
      x = jax.nn.relu(norm(layer(x)))
    return self.out(x)


class EVAD(nnx.Module):
  """End-to-end action detector (see the module docstring).

  Args:
    keep_rates: {block: keep rate} for KTP; default `default_keep_rate` at blocks
      `ktp.default_prune_blocks(depth)` (3, 6, 9 for ViT-B). `{}` or rate 1.0: no pruning.
    enhanced_weight: weight of keyframe queries in the KTP scores (EW; 1 or 4).
    feature_blocks: blocks whose keyframe tokens feed the localizer's FPN (default 2, 5, 8, 11).
    official_order: rebuild the grid as the official code does (docs/algorithms.md §4.2, ablation only).
    attention, remat: the encoder's and the decoder's blocks (`VideoViT`); KTP's pruning blocks
      compute their attention explicitly (they need the probabilities) and are not rematerialised.
    pos_grid: () or the spatial grid the position tables are laid out for ((14, 14) for
      VideoMAE's 224² tables), interpolated per slice to the actual grid in the encoder and the
      context refinement decoder alike (`vit.position_table`, EVAD's `interpolate_pos_embed_online`).
  """

  def __init__(
    self,
    size: str | None = "B",
    *,
    num_classes: int,
    dim=None,
    depth=None,
    num_heads=None,
    num_frames: int = 16,
    image_size: int | Sequence[int] = 224,
    tubelet: Sequence[int] = (2, 16, 16),
    keep_rates: dict[int, float] | None = None,
    default_keep_rate: float = 0.7,
    enhanced_weight: float = 1.0,
    feature_blocks: Sequence[int] | None = None,
    drop_path_rate: float = 0.1,
    decoder_dim: int | None = None,
    decoder_depth: int | None = None,
    decoder_heads: int | None = None,
    decoder_drop_path_rate: float = 0.1,
    action_hidden: int = 2048,
    action_layers: int = 1,
    roi_extension: Sequence[float] = (0.4, 0.2),
    roi_size: int = 7,
    official_order: bool = False,
    localizer: dict | None = None,
    attention: str = "auto",
    remat: str = "none",
    pos_grid: Sequence[int] = (),
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1; got {num_classes}.")
    spec = resolve_size(
      size,
      dim=dim,
      depth=depth,
      num_heads=num_heads,
      decoder_dim=decoder_dim,
      decoder_heads=decoder_heads,
    )
    self.encoder = VideoViT(
      size,
      dim=spec.dim,
      depth=spec.depth,
      num_heads=spec.num_heads,
      num_frames=num_frames,
      image_size=image_size,
      tubelet=tubelet,
      drop_path_rate=drop_path_rate,
      final_norm=True,
      attention=attention,
      remat=remat,
      pos_grid=pos_grid,
      dtype=dtype,
      rngs=rngs,
    )
    self.grid = self.encoder.grid
    self.pos_grid = self.encoder.pos_grid
    self.tubelet = self.encoder.tubelet
    self.image_hw = (self.grid[1] * self.tubelet[1], self.grid[2] * self.tubelet[2])
    if keep_rates is None:
      keep_rates = {b: default_keep_rate for b in ktp.default_prune_blocks(spec.depth)}
    self.keep_rates = {int(b): float(r) for b, r in keep_rates.items()}
    bad = [b for b in self.keep_rates if not 0 <= b < spec.depth]
    if bad:
      raise ValueError(f"keep_rates names blocks {bad} outside 0..{spec.depth - 1}")
    num_key = self.grid[1] * self.grid[2]
    self.lengths = ktp.sequence_lengths(
      int(np.prod(self.grid)), num_key, spec.depth, self.keep_rates
    )
    self.enhanced_weight = float(enhanced_weight)
    self.feature_blocks = tuple(
      int(b)
      for b in (
        feature_blocks if feature_blocks is not None else ktp.default_feature_blocks(spec.depth)
      )
    )
    if len(self.feature_blocks) != 4 or any(not 0 <= b < spec.depth for b in self.feature_blocks):
      raise ValueError(
        f"feature_blocks must be 4 blocks in 0..{spec.depth - 1}, got {self.feature_blocks}"
      )
    self.official_order = bool(official_order)
    self.roi_extension = tuple(float(s) for s in roi_extension)
    self.roi_size = int(roi_size)
    self.num_classes = num_classes
    self.localizer = ActorLocalizer(
      spec.dim, token_stride=self.tubelet[1], **(localizer or {}), dtype=dtype, rngs=rngs
    )
    ddim = spec.decoder_dim
    position_table(self.grid, ddim, self.pos_grid)  # the decoder's table, computed once here
    depth_d = decoder_depth or DECODER_DEPTH.get(size or "", 6)
    self.decoder_embed = torch_linear(spec.dim, ddim, use_bias=False, dtype=dtype, rngs=rngs)
    self.mask_token = nnx.Param(
      nnx.initializers.truncated_normal(stddev=0.02)(rngs.params(), (1, 1, ddim), jnp.float32)
    )
    self.decoder_blocks = nnx.List(
      [
        Block(
          ddim,
          spec.decoder_heads,
          drop_path=r,
          attention=attention,
          remat=remat,
          dtype=dtype,
          rngs=rngs,
        )
        for r in drop_path_rates(decoder_drop_path_rate, depth_d)
      ]
    )
    self.action_heads = nnx.List(
      [
        ActionHead(ddim, action_hidden, num_classes, action_layers, dtype=dtype, rngs=rngs)
        for _ in range(depth_d)
      ]
    )

  @property
  def num_kept_tokens(self) -> int:
    """Tokens leaving the encoder (keyframe + kept non-keyframe)."""
    return self.lengths[-1] if self.lengths else int(np.prod(self.grid))

  def encode(self, video: jax.Array, *, deterministic: bool = True, rngs=None):
    """(tokens [B, K, D] keyframe first, kept ids [B, K − h·w], 4 keyframe maps [B, h, w, D])."""
    if tuple(video.shape[2:4]) != self.image_hw or video.shape[1] != self.grid[0] * self.tubelet[0]:
      raise ValueError(
        f"EVAD was built for clips [B, {self.grid[0] * self.tubelet[0]}, "
        f"{self.image_hw[0]}, {self.image_hw[1]}, 3]; got {video.shape}"
      )
    tokens = self.encoder.embed(video)
    return ktp.encode_keyframe_first(
      self.encoder,
      tokens,
      self.grid,
      keep_rates=self.keep_rates,
      enhanced_weight=self.enhanced_weight,
      feature_blocks=self.feature_blocks,
      deterministic=deterministic,
      rngs=rngs,
    )

  def roi_tokens(self, full: jax.Array, boxes: jax.Array, image_hw=None) -> jax.Array:
    """One token per box: RoIAlign the enlarged box (clipped to `image_hw`, default the whole
    input) on every slice of the full grid [B, N, C], max over the RoI, mean over the slices
    -> [B, P, C]."""
    t, h, w = self.grid
    b, p, _ = boxes.shape
    c = full.shape[-1]
    maps = full.reshape(b * t, h, w, c)
    hw = self.image_hw if image_hw is None else image_hw
    boxes = ops.enlarge_boxes(boxes, self.roi_extension, hw)  # EVAD's (w + 1) rule
    per_slice = jnp.broadcast_to(boxes[:, None], (b, t, p, 4)).reshape(-1, 4)
    index = jnp.repeat(jnp.arange(b * t, dtype=jnp.int32), p)
    rois = ops.roi_align(
      maps, per_slice, index, self.roi_size, 1.0 / self.tubelet[1], sampling_ratio=2, aligned=True
    )  # [B·T'·P, 7, 7, C]
    return rois.max(axis=(1, 2)).reshape(b, t, p, c).mean(axis=1)

  def refine(
    self,
    x: jax.Array,
    ids: jax.Array,
    boxes: jax.Array,
    image_hw=None,
    *,
    deterministic: bool = True,
    rngs=None,
  ) -> jax.Array:
    """Context refinement decoder: [L, B, P, num_classes] action logits for `boxes` [B, P, 4]."""
    xv = self.decoder_embed(x)
    pos = jnp.asarray(position_table(self.grid, xv.shape[-1], self.pos_grid), xv.dtype)
    full, positions = ktp.rebuild_grid(
      xv, ids, self.grid, self.mask_token[...][0, 0], official_order=self.official_order
    )
    rois = self.roi_tokens(full + pos[None], boxes, image_hw)
    y = jnp.concatenate([xv + pos[positions], rois.astype(xv.dtype)], axis=1)
    p = boxes.shape[1]
    logits = []
    for block, head in zip(self.decoder_blocks, self.action_heads):
      y = block(y, deterministic=deterministic, rngs=rngs)
      logits.append(head(y[:, -p:]).astype(jnp.float32))
    return jnp.stack(logits)

  def __call__(self, video: jax.Array, image_hw=None, *, deterministic: bool = True, rngs=None):
    """`image_hw`: (H, W) or [B, 2] content size of each clip (default: the whole input)."""
    if image_hw is not None:
      image_hw = jnp.asarray(image_hw, jnp.float32)
    hw = self.image_hw if image_hw is None else image_hw
    x, ids, maps = self.encode(video, deterministic=deterministic, rngs=rngs)
    loc = self.localizer(maps, hw, deterministic=deterministic, rngs=rngs)
    boxes = jax.lax.stop_gradient(loc["boxes"][-1])  # the last stage's boxes, detached
    actions = self.refine(x, ids, boxes, image_hw, deterministic=deterministic, rngs=rngs)
    out = {"person_logits": loc["logits"], "boxes": loc["boxes"], "actions": actions}
    return out, {"kept_ids": ids}
