"""Video classifier: encoder on all (or kept) tokens, mean pooling, fc_norm, dropout, head."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mgvm.models.vit import VideoViT, layer_norm


def scaled_trunc_normal(scale: float, stddev: float = 0.02):
  """Trunc-normal(stddev) multiplied by `scale` (the reference's head `init_scale`)."""
  base = nnx.initializers.truncated_normal(stddev=stddev)
  return lambda key, shape, dtype=jnp.float32: base(key, shape, dtype) * scale


class VideoClassifier(nnx.Module):
  """VideoMAE fine-tuning model (docs/algorithms.md §1.6).

  `model(video, ids_keep=None)` -> `(logits [B, num_classes] float32, aux)`; with
  `ids_keep` [B, K] the encoder sees only those tokens (token compression).
  `aux["pooled"]` is the normalised mean token. `attention` / `remat` / `pos_grid` /
  `pos_embed`: see `VideoViT`.
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
    in_channels: int = 3,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_path_rate: float = 0.0,
    layer_scale_init: float = 0.0,
    fc_drop_rate: float = 0.0,
    head_init_scale: float = 0.001,
    attention: str = "auto",
    remat: str = "none",
    pos_grid: Sequence[int] = (),
    pos_embed: str = "sinusoid",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1; got {num_classes}.")
    self.encoder = VideoViT(
      size,
      dim=dim,
      depth=depth,
      num_heads=num_heads,
      num_frames=num_frames,
      image_size=image_size,
      tubelet=tubelet,
      in_channels=in_channels,
      mlp_ratio=mlp_ratio,
      qkv_bias=qkv_bias,
      drop_path_rate=drop_path_rate,
      layer_scale_init=layer_scale_init,
      final_norm=False,
      init="trunc_normal",
      attention=attention,
      remat=remat,
      pos_grid=pos_grid,
      pos_embed=pos_embed,
      dtype=dtype,
      rngs=rngs,
    )
    dim = self.encoder.dim
    self.num_classes = num_classes
    self.fc_norm = layer_norm(dim, dtype, rngs=rngs)
    self.fc_dropout = nnx.Dropout(fc_drop_rate)
    self.head = nnx.Linear(
      dim,
      num_classes,
      kernel_init=scaled_trunc_normal(head_init_scale),
      dtype=dtype,
      param_dtype=jnp.float32,
      rngs=rngs,
    )

  @property
  def grid(self) -> tuple[int, int, int]:
    return self.encoder.grid

  def __call__(
    self,
    video: jax.Array,
    *,
    ids_keep: jax.Array | None = None,
    tokens: jax.Array | None = None,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
  ):
    if tokens is None:
      tokens = self.encoder.embed(video)
    x = self.encoder.encode(tokens, ids_keep, deterministic=deterministic, rngs=rngs)
    pooled = self.fc_norm(x.mean(axis=1))
    # A deterministic graph holds no dropout op at all (what ONNX export traces).
    dropped = pooled if deterministic else self.fc_dropout(pooled, deterministic=False, rngs=rngs)
    logits = self.head(dropped)
    return logits.astype(jnp.float32), {"pooled": pooled}
