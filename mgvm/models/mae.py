"""VideoMAE: encoder on the visible tokens, a narrow decoder that predicts target tubelets.

docs/algorithms.md §1.2: visible tokens -> encoder -> Linear (no bias) to the decoder width;
decoder input = [visible + decoder positions] ++ [mask token + positions of
`ids_target`]; LayerNorm + head on the last M rows only.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mgvm.models.vit import (
  Block,
  VideoViT,
  drop_path_rates,
  gather_tokens,
  layer_norm,
  resolve_size,
  sinusoid_table,
  torch_linear,
)


class MAEDecoder(nnx.Module):
  """Transformer blocks, then LayerNorm and a Linear head on the last `num_target` tokens."""

  def __init__(
    self,
    dim: int,
    depth: int,
    num_heads: int,
    out_dim: int,
    *,
    mlp_ratio=4.0,
    qkv_bias=True,
    drop_path_rate=0.0,
    layer_scale_init=0.0,
    attention: str = "auto",
    remat: str = "none",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.blocks = nnx.List(
      [
        Block(
          dim,
          num_heads,
          mlp_ratio=mlp_ratio,
          qkv_bias=qkv_bias,
          drop_path=r,
          layer_scale_init=layer_scale_init,
          attention=attention,
          remat=remat,
          dtype=dtype,
          rngs=rngs,
        )
        for r in drop_path_rates(drop_path_rate, depth)
      ]
    )
    self.norm = layer_norm(dim, dtype, rngs=rngs)
    self.head = torch_linear(dim, out_dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, num_target: int, *, deterministic=True, rngs=None):
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    return self.head(self.norm(x[:, x.shape[1] - num_target :]))


class VideoMAE(nnx.Module):
  """VideoMAE pre-training model.

  `model(video, m)` -> `(pred [B, M, C·prod(tubelet)], aux)` with rows in the order of
  `m.ids_target`; `aux["encoded"]` holds the encoder output on `m.ids_keep`.
  Sizes by name ("S", "B", "L", "H"; decoder depth 4 for S/B, 12 for L/H) or custom
  (`size=None, dim=, depth=, num_heads=`, optional `decoder_dim/depth/heads`).
  `attention` and `remat` apply to the encoder and the decoder blocks alike (`VideoViT`);
  `pos_grid` / `pos_embed` are the encoder's positions (`VideoViT`; the decoder keeps the fixed
  1-D table, as the reference). `encoder_norm=False` drops the encoder's final LayerNorm:
  Hugging Face's `VideoMAEForPreTraining` with its default `use_mean_pooling=True`.
  """

  def __init__(
    self,
    size: str | None = "B",
    *,
    dim=None,
    depth=None,
    num_heads=None,
    decoder_dim=None,
    decoder_depth=None,
    decoder_heads=None,
    num_frames: int = 16,
    image_size: int | Sequence[int] = 224,
    tubelet: Sequence[int] = (2, 16, 16),
    in_channels: int = 3,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_path_rate: float = 0.0,
    layer_scale_init: float = 0.0,
    attention: str = "auto",
    remat: str = "none",
    pos_grid: Sequence[int] = (),
    pos_embed: str = "sinusoid",
    encoder_norm: bool = True,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    spec = resolve_size(
      size,
      dim=dim,
      depth=depth,
      num_heads=num_heads,
      decoder_dim=decoder_dim,
      decoder_depth=decoder_depth,
      decoder_heads=decoder_heads,
    )
    self.spec = spec
    self.encoder = VideoViT(
      None,
      dim=spec.dim,
      depth=spec.depth,
      num_heads=spec.num_heads,
      num_frames=num_frames,
      image_size=image_size,
      tubelet=tubelet,
      in_channels=in_channels,
      mlp_ratio=mlp_ratio,
      qkv_bias=qkv_bias,
      drop_path_rate=drop_path_rate,
      layer_scale_init=layer_scale_init,
      final_norm=encoder_norm,
      attention=attention,
      remat=remat,
      pos_grid=pos_grid,
      pos_embed=pos_embed,
      dtype=dtype,
      rngs=rngs,
    )
    self.encoder_to_decoder = torch_linear(
      spec.dim, spec.decoder_dim, use_bias=False, dtype=dtype, rngs=rngs
    )
    self.mask_token = nnx.Param(
      nnx.initializers.truncated_normal(stddev=0.02)(rngs.params(), (1, 1, spec.decoder_dim))
    )
    out_dim = in_channels * math.prod(self.encoder.tubelet)
    self.decoder = MAEDecoder(
      spec.decoder_dim,
      spec.decoder_depth,
      spec.decoder_heads,
      out_dim,
      mlp_ratio=mlp_ratio,
      qkv_bias=qkv_bias,
      drop_path_rate=drop_path_rate,
      layer_scale_init=layer_scale_init,
      attention=attention,
      remat=remat,
      dtype=dtype,
      rngs=rngs,
    )

  @property
  def grid(self) -> tuple[int, int, int]:
    return self.encoder.grid

  @property
  def tubelet(self) -> tuple[int, int, int]:
    return self.encoder.tubelet

  def __call__(
    self,
    video: jax.Array,
    m,
    *,
    tokens: jax.Array | None = None,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
  ):
    """video [B, T, H, W, C]; m: a `masking.MaskOut`; tokens: `encoder.embed(video)` if precomputed."""
    if tokens is None:
      tokens = self.encoder.embed(video)
    encoded = self.encoder.encode(tokens, m.ids_keep, deterministic=deterministic, rngs=rngs)
    x_vis = self.encoder_to_decoder(encoded)
    pos = jnp.asarray(sinusoid_table(tokens.shape[1], x_vis.shape[-1]), x_vis.dtype)[None]
    pos = jnp.broadcast_to(pos, (x_vis.shape[0],) + pos.shape[1:])
    num_target = m.ids_target.shape[1]
    mask_tokens = self.mask_token[...].astype(x_vis.dtype) + gather_tokens(pos, m.ids_target)
    x = jnp.concatenate([x_vis + gather_tokens(pos, m.ids_keep), mask_tokens], axis=1)
    pred = self.decoder(x, num_target, deterministic=deterministic, rngs=rngs)
    return pred.astype(jnp.float32), {"encoded": encoded}
