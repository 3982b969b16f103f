"""EVAD actor localizer: keyframe FPN and Sparse R-CNN iterative heads (docs/algorithms.md §4.4).

* `KeyframeFPN`: four keyframe token maps (taken from four encoder blocks) are resized x4, x2, x1,
  x0.5 (nearest) and fed to a detectron2-style FPN (1x1 laterals, 3x3 outputs, top-down nearest x2
  plus add) giving p2..p5 (strides 4, 8, 16, 32 for a token stride of 16). The extra max-pool level
  p6 of the reference is never RoI-pooled, so it is not built.
* `RCNNHead`: one Sparse R-CNN stage: multi-level RoIAlign (aligned, 7x7, sampling 2) -> proposal
  self-attention -> `DynamicConv` -> FFN -> class (person / no-object) and box-delta branches.
* `ActorLocalizer`: learnable proposal boxes (normalised cxcywh, init = whole image) and features,
  the FPN and `num_stages` heads; boxes are detached between stages.
The set criterion that trains it (Hungarian matching, `SetCriterion` terms) lives in
`mgvm.train.detection`.

Choices where the reference is silent or PyTorch-specific:
- Layer norms use PyTorch's default eps (1e-5), as the reference head's `nn.LayerNorm`s.
- Linear layers are xavier-uniform (the reference re-initialises every >1-D head weight so,
  including the packed attention in-projection) with zero biases (PyTorch keeps its default uniform
  biases there); FPN convs use `c2_xavier_fill`; proposal features N(0, 1) (`nn.Embedding`).
- The boxes given to RoIAlign carry no gradient (detectron2's ROIAlign has no gradient w.r.t. the
  rois); the first stage's boxes, i.e. the learnable proposal boxes, learn through the deltas only.
- Heads are unrolled (one module per stage, like the reference's `head_series`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mgvm import ops
from mgvm.models.vit import torch_linear

HEAD_LN_EPS = 1e-5  # nn.LayerNorm default in the reference RCNNHead / DynamicConv.
SCALE_CLAMP = math.log(1e5 / 16)
BBOX_WEIGHTS = (2.0, 2.0, 1.0, 1.0)
PERSON, NO_OBJECT = 0, 1


def head_norm(dim: int, dtype=jnp.float32, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=HEAD_LN_EPS, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def fpn_strides(token_stride: int = 16) -> tuple[int, int, int, int]:
  """Strides of p2..p5 w.r.t. the image for encoder tokens of `token_stride` pixels."""
  if token_stride % 4:
    raise ValueError(f"token_stride must be a multiple of 4; got {token_stride}.")
  return (token_stride // 4, token_stride // 2, token_stride, token_stride * 2)


def _upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """[B, H, W, C] -> [B, factor*H, factor*W, C]; F.interpolate(scale_factor=factor, 'nearest')."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _downsample_half_nearest(x: jax.Array) -> jax.Array:
  """F.interpolate(scale_factor=0.5, 'nearest'): output floor(H/2) x floor(W/2), source 2*i."""
  h, w = x.shape[1] // 2, x.shape[2] // 2
  return x[:, 0 : 2 * h : 2, 0 : 2 * w : 2]


def image_whwh(image_hw, batch: int) -> jax.Array:
  """(H, W) for the whole batch, or [B, 2] per image -> [B, 4] float32 (w, h, w, h)."""
  hw = jnp.asarray(image_hw, jnp.float32)
  if hw.shape not in ((2,), (batch, 2)):
    raise ValueError(f"image_hw must be (H, W) or [B={batch}, 2]; got shape {hw.shape}.")
  hw = jnp.broadcast_to(hw, (batch, 2))
  return jnp.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=-1)


def c2_xavier_conv(
  din: int, dout: int, kernel: int, *, dtype=jnp.float32, rngs: nnx.Rngs
) -> nnx.Conv:
  """Conv2d with detectron2's `c2_xavier_fill` (U(+-sqrt(3 / fan_in))) and zero bias."""
  return nnx.Conv(
    din,
    dout,
    kernel_size=(kernel, kernel),
    strides=1,
    padding=[(kernel // 2, kernel // 2)] * 2,
    kernel_init=nnx.initializers.variance_scaling(1.0, "fan_in", "uniform"),
    bias_init=nnx.initializers.zeros_init(),
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )


class KeyframeFPN(nnx.Module):
  """Four [B, h, w, D] keyframe maps -> [p2, p3, p4, p5] with `dim` channels.

  The maps are resized x4, x2, x1, x0.5 (nearest, as `F.interpolate`), so p2 has 4x the token
  map's resolution and p5 half of it. h and w must be even (the top-down x2 upsampling of p5 must
  meet the x1 level, as in the reference, whose inputs are padded to multiples of 32 pixels).
  """

  def __init__(self, in_dim: int, dim: int = 256, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.dtype = dtype
    # Index 0..3 = p2..p5 (bottom-up order).
    self.lateral = nnx.List(
      [c2_xavier_conv(in_dim, dim, 1, dtype=dtype, rngs=rngs) for _ in range(4)]
    )
    self.output = nnx.List([c2_xavier_conv(dim, dim, 3, dtype=dtype, rngs=rngs) for _ in range(4)])

  def __call__(self, maps: Sequence[jax.Array]) -> list[jax.Array]:
    if len(maps) != 4:
      raise ValueError(f"KeyframeFPN needs 4 token maps; got {len(maps)}.")
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1 or len(maps[0].shape) != 4:
      raise ValueError(f"the 4 token maps must share one [B, h, w, D] shape; got {sorted(shapes)}.")
    h, w = maps[0].shape[1:3]
    if h % 2 or w % 2:
      raise ValueError(f"token maps must have even height and width; got {h}x{w}.")
    res = [
      _upsample_nearest(maps[0], 4),
      _upsample_nearest(maps[1], 2),
      maps[2],
      _downsample_half_nearest(maps[3]),
    ]
    prev = self.lateral[3](res[3])
    outs = [self.output[3](prev)]
    for lvl in (2, 1, 0):
      prev = self.lateral[lvl](res[lvl]) + _upsample_nearest(prev, 2)
      outs.insert(0, self.output[lvl](prev))
    return outs


class DynamicConv(nnx.Module):
  """Instance interaction: two 1x1 'convs' on the RoI positions whose weights come from the
  proposal feature (dim -> dynamic_dim -> dim, LN + ReLU each), then flatten -> Linear, LN, ReLU.
  """

  def __init__(
    self,
    dim: int = 256,
    dynamic_dim: int = 64,
    pooler_resolution: int = 7,
    *,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.dim, self.dynamic_dim = dim, dynamic_dim
    self.dynamic_layer = torch_linear(dim, 2 * dim * dynamic_dim, dtype=dtype, rngs=rngs)
    self.norm1 = head_norm(dynamic_dim, dtype, rngs=rngs)
    self.norm2 = head_norm(dim, dtype, rngs=rngs)
    self.out_layer = torch_linear(dim * pooler_resolution**2, dim, dtype=dtype, rngs=rngs)
    self.norm3 = head_norm(dim, dtype, rngs=rngs)

  def __call__(self, pro_features: jax.Array, roi_features: jax.Array) -> jax.Array:
    """pro_features [K, dim], roi_features [K, R*R, dim] (positions row-major) -> [K, dim]."""
    k = pro_features.shape[0]
    n = self.dim * self.dynamic_dim
    params = self.dynamic_layer(pro_features)
    param1 = params[:, :n].reshape(k, self.dim, self.dynamic_dim)
    param2 = params[:, n:].reshape(k, self.dynamic_dim, self.dim)
    x = jax.nn.relu(self.norm1(jnp.einsum("kpc,kcd->kpd", roi_features, param1)))
    x = jax.nn.relu(self.norm2(jnp.einsum("kpd,kdc->kpc", x, param2)))
    return jax.nn.relu(self.norm3(self.out_layer(x.reshape(k, -1))))


class ProposalAttention(nnx.Module):
  """`nn.MultiheadAttention` over the proposals of one image (packed in-projection, biases 0)."""

  def __init__(
    self, dim: int, num_heads: int, *, dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs
  ):
    if dim % num_heads:
      raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}.")
    self.num_heads = num_heads
    self.in_proj = torch_linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
    self.out_proj = torch_linear(dim, dim, dtype=dtype, rngs=rngs)
    self.attn_drop = nnx.Dropout(dropout)

  def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None):
    b, p, d = x.shape
    hd = d // self.num_heads
    q, k, v = jnp.split(self.in_proj(x).reshape(b, p, 3, self.num_heads, hd), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(hd)
    attn = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    attn = self.attn_drop(attn, deterministic=deterministic, rngs=rngs)
    out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, p, d)
    return self.out_proj(out)


class RCNNHead(nnx.Module):
  """One Sparse R-CNN stage.

  `__call__(features p2..p5, boxes [B, P, 4] xyxy pixels, pro_features [B, P, dim])` ->
  (logits [B, P, 2] f32, new boxes [B, P, 4] f32, features [B, P, dim] in the compute dtype).
  """

  def __init__(
    self,
    dim: int = 256,
    *,
    num_heads: int = 8,
    dynamic_dim: int = 64,
    ffn_dim: int = 2048,
    num_cls: int = 1,
    num_reg: int = 3,
    pooler_resolution: int = 7,
    sampling_ratio: int = 2,
    strides: Sequence[int] = (4, 8, 16, 32),
    dropout: float = 0.0,
    scale_clamp: float = SCALE_CLAMP,
    bbox_weights: Sequence[float] = BBOX_WEIGHTS,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.dim = dim
    self.pooler_resolution = pooler_resolution
    self.sampling_ratio = sampling_ratio
    self.strides = tuple(int(s) for s in strides)
    self.scale_clamp = float(scale_clamp)
    self.bbox_weights = tuple(float(w) for w in bbox_weights)
    self.dtype = dtype
    self.self_attn = ProposalAttention(dim, num_heads, dropout=dropout, dtype=dtype, rngs=rngs)
    self.inst_interact = DynamicConv(dim, dynamic_dim, pooler_resolution, dtype=dtype, rngs=rngs)
    self.linear1 = torch_linear(dim, ffn_dim, dtype=dtype, rngs=rngs)
    self.linear2 = torch_linear(ffn_dim, dim, dtype=dtype, rngs=rngs)
    self.norm1 = head_norm(dim, dtype, rngs=rngs)
    self.norm2 = head_norm(dim, dtype, rngs=rngs)
    self.norm3 = head_norm(dim, dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout)
    self.cls_module = nnx.List(
      [
        nnx.List(
          [
            torch_linear(dim, dim, use_bias=False, dtype=dtype, rngs=rngs),
            head_norm(dim, dtype, rngs=rngs),
          ]
        )
        for _ in range(num_cls)
      ]
    )
    self.reg_module = nnx.List(
      [
        nnx.List(
          [
            torch_linear(dim, dim, use_bias=False, dtype=dtype, rngs=rngs),
            head_norm(dim, dtype, rngs=rngs),
          ]
        )
        for _ in range(num_reg)
      ]
    )
    self.class_logits = torch_linear(dim, 2, dtype=dtype, rngs=rngs)
    self.bboxes_delta = torch_linear(dim, 4, dtype=dtype, rngs=rngs)

  def __call__(
    self,
    features: Sequence[jax.Array],
    boxes: jax.Array,
    pro_features: jax.Array,
    *,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
  ):
    b, p = boxes.shape[:2]
    r = self.pooler_resolution
    # RoI features; like detectron2's ROIAlign (no gradient w.r.t. the rois) the sampling
    # positions carry no gradient: boxes learn only through the deltas.
    rois = ops.multilevel_roi_align(
      list(features),
      self.strides,
      jax.lax.stop_gradient(boxes.reshape(b * p, 4)),
      jnp.repeat(jnp.arange(b, dtype=jnp.int32), p),
      (r, r),
      sampling_ratio=self.sampling_ratio,
    )
    rois = rois.reshape(b * p, r * r, self.dim).astype(self.dtype)

    x = pro_features.astype(self.dtype)
    y = self.self_attn(x, deterministic=deterministic, rngs=rngs)
    x = self.norm1(x + self.dropout(y, deterministic=deterministic, rngs=rngs))
    y = self.inst_interact(x.reshape(b * p, self.dim), rois).reshape(b, p, self.dim)
    x = self.norm2(x + self.dropout(y, deterministic=deterministic, rngs=rngs))
    y = jax.nn.relu(self.linear1(x))
    y = self.linear2(self.dropout(y, deterministic=deterministic, rngs=rngs))
    obj = self.norm3(x + self.dropout(y, deterministic=deterministic, rngs=rngs))

    cls_feature, reg_feature = obj, obj
    for linear, norm in self.cls_module:
      cls_feature = jax.nn.relu(norm(linear(cls_feature)))
    for linear, norm in self.reg_module:
      reg_feature = jax.nn.relu(norm(linear(reg_feature)))
    logits = self.class_logits(cls_feature).astype(jnp.float32)
    deltas = self.bboxes_delta(reg_feature).astype(jnp.float32)
    new_boxes = ops.apply_deltas(
      deltas.reshape(b * p, 4),
      boxes.reshape(b * p, 4).astype(jnp.float32),
      weights=self.bbox_weights,
      scale_clamp=self.scale_clamp,
    )
    return logits, new_boxes.reshape(b, p, 4), obj


class ActorLocalizer(nnx.Module):
  """EVAD's end-to-end person detector on four keyframe token maps.

  `__call__(maps, image_hw)` -> dict(logits [S, B, P, 2] f32 (index 0 person, 1 no-object),
  boxes [S, B, P, 4] f32 xyxy pixels, features [B, P, dim] (last stage's proposal features)).
  `image_hw` is (H, W) for the batch or [B, 2] per image (unpadded sizes, like `images_whwh`).
  """

  def __init__(
    self,
    in_dim: int,
    *,
    dim: int = 256,
    num_proposals: int = 100,
    num_stages: int = 6,
    num_heads: int = 8,
    dynamic_dim: int = 64,
    ffn_dim: int = 2048,
    num_cls: int = 1,
    num_reg: int = 3,
    pooler_resolution: int = 7,
    sampling_ratio: int = 2,
    token_stride: int = 16,
    dropout: float = 0.0,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.dim = dim
    self.num_proposals = num_proposals
    self.num_stages = num_stages
    self.strides = fpn_strides(token_stride)
    self.fpn = KeyframeFPN(in_dim, dim, dtype=dtype, rngs=rngs)
    # Normalised (cx, cy, w, h) = (0.5, 0.5, 1, 1): every proposal starts as the whole image.
    self.proposal_boxes = nnx.Param(
      jnp.tile(jnp.array([0.5, 0.5, 1.0, 1.0], jnp.float32), (num_proposals, 1))
    )
    # nn.Embedding's default initialisation, N(0, 1).
    self.proposal_features = nnx.Param(
      jax.random.normal(rngs.params(), (num_proposals, dim), jnp.float32)
    )
    self.heads = nnx.List(
      [
        RCNNHead(
          dim,
          num_heads=num_heads,
          dynamic_dim=dynamic_dim,
          ffn_dim=ffn_dim,
          num_cls=num_cls,
          num_reg=num_reg,
          pooler_resolution=pooler_resolution,
          sampling_ratio=sampling_ratio,
          strides=self.strides,
          dropout=dropout,
          dtype=dtype,
          rngs=rngs,
        )
        for _ in range(num_stages)
      ]
    )

  def __call__(
    self,
    maps: Sequence[jax.Array],
    image_hw,
    *,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
  ) -> dict[str, jax.Array]:
    features = self.fpn(maps)
    b = maps[0].shape[0]
    whwh = image_whwh(image_hw, b)
    boxes = ops.cxcywh_to_xyxy(self.proposal_boxes[...])[None] * whwh[:, None, :]
    pro = jnp.broadcast_to(self.proposal_features[...], (b, self.num_proposals, self.dim))
    all_logits, all_boxes = [], []
    for head in self.heads:
      logits, new_boxes, pro = head(features, boxes, pro, deterministic=deterministic, rngs=rngs)
      all_logits.append(logits)
      all_boxes.append(new_boxes)
      boxes = jax.lax.stop_gradient(new_boxes)
    return dict(logits=jnp.stack(all_logits), boxes=jnp.stack(all_boxes), features=pro)


def person_scores(logits: jax.Array) -> jax.Array:
  """[..., 2] logits -> [...] softmax probability of `person` (inference score)."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., PERSON]
