"""Video ViT encoder: tubelet embedding, 1-D sinusoid positions, pre-LN blocks.

Follows the VideoMAE reference (docs/algorithms.md §1.1): a Conv3d tubelet embedding
(kernel = stride = tubelet), a fixed 1-D interleaved sin/cos table over the
flattened (t, h, w) token index, pre-LN blocks (LayerNorm eps 1e-6, exact GELU,
MLP ratio 4) whose attention has learned q/v biases and a zero k bias.
With `pos_grid=(gh, gw)` the table is the one of a (T', gh, gw) grid, bicubically interpolated
per time slice to the actual (h, w), as EVAD does for its non-square inputs (`position_table`).
Attention runs through `jax.nn.dot_product_attention` (XLA or cuDNN) or two einsums, chosen per
backend (`Attention`); `remat` rematerialises each block in the backward pass (`Block`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LN_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class SizeSpec:
  """Encoder and decoder widths of a named model size."""

  dim: int
  depth: int
  num_heads: int
  decoder_dim: int
  decoder_heads: int
  decoder_depth: int


# Official VideoMAE sizes (docs/algorithms.md §1.1); decoder depth as in the scripts.
SIZES = {
  "S": SizeSpec(384, 12, 6, 192, 3, 4),
  "B": SizeSpec(768, 12, 12, 384, 6, 4),
  "L": SizeSpec(1024, 24, 16, 512, 8, 12),
  "H": SizeSpec(1280, 32, 16, 640, 8, 12),
}


def resolve_size(
  size: str | None,
  *,
  dim=None,
  depth=None,
  num_heads=None,
  decoder_dim=None,
  decoder_depth=None,
  decoder_heads=None,
) -> SizeSpec:
  """Named size (S/B/L/H) with optional overrides, or a fully custom size.

  For a custom encoder the decoder defaults to half the width, half the heads
  (the ratio of every official size) and depth 4.
  """
  if size is not None:
    if size not in SIZES:
      raise ValueError(
        f"Unknown model size {size!r}; known sizes: {sorted(SIZES)}, "
        "or pass size=None with dim=, depth=, num_heads=."
      )
    base = SIZES[size]
  else:
    missing = [
      n for n, v in (("dim", dim), ("depth", depth), ("num_heads", num_heads)) if v is None
    ]
    if missing:
      raise ValueError(f"A custom model size (size=None) needs {', '.join(missing)}.")
    base = SizeSpec(dim, depth, num_heads, dim // 2, max(1, num_heads // 2), 4)
  spec = dataclasses.replace(
    base,
    **{
      k: v
      for k, v in dict(
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
      ).items()
      if v is not None
    },
  )
  for width, heads, what in (
    (spec.dim, spec.num_heads, "dim"),
    (spec.decoder_dim, spec.decoder_heads, "decoder_dim"),
  ):
    if width % heads:
      raise ValueError(f"{what}={width} is not divisible by its number of heads {heads}.")
  return spec


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """The reference 1-D table: angle p / 10000^(2*floor(j/2)/dim); sin on even j, cos on odd j."""
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  j = np.arange(dim)
  angles = pos / np.power(10000.0, 2 * (j // 2) / dim)
  table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
  return table.astype(np.float32)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """[..., 4] weights of the samples at offsets -1, 0, 1, 2 from floor(x), t = x - floor(x):
  the Keys cubic kernel with torch's a = -0.75, in `t`'s dtype."""
  a = t.dtype.type(a)
  one, two = t.dtype.type(1), t.dtype.type(2)

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + one), near(t), near(one - t), far(two - t)], axis=-1)


def bicubic_matrix(
  size_in: int, size_out: int, align_corners: bool = False, dtype=np.float32
) -> np.ndarray:
  """float64 [size_out, size_in]: 1-D bicubic resampling as torch's `interpolate(mode="bicubic")`.

  Source coordinate `in/out · (i + 0.5) − 0.5` (align_corners=False; not clamped, as torch's cubic
  path) or `(in − 1)/(out − 1) · i` (True); the four taps around it are clamped to the edge.
  Coordinates and weights are computed in `dtype`, as torch does for tensors of that dtype.
  """
  if size_in < 1 or size_out < 1:
    raise ValueError(f"bicubic sizes must be >= 1, got {size_in} -> {size_out}")
  f = np.dtype(dtype).type
  dst = np.arange(size_out, dtype=dtype)
  if align_corners:
    scale = f(size_in - 1) / f(size_out - 1) if size_out > 1 else f(0)
    src = scale * dst
  else:
    scale = f(size_in) / f(size_out)
    src = scale * (dst + f(0.5)) - f(0.5)
  base = np.floor(src)
  weights = _cubic_weights((src - base).astype(dtype)).astype(np.float64)
  matrix = np.zeros((size_out, size_in))
  rows = np.arange(size_out)
  for k in range(4):
    taps = np.clip(base.astype(np.int64) - 1 + k, 0, size_in - 1)
    np.add.at(matrix, (rows, taps), weights[:, k])
  return matrix


def resize_bicubic(x: np.ndarray, size: Sequence[int], align_corners: bool = False) -> np.ndarray:
  """float64 `x` [..., H, W] resized to [..., h, w] as torch's bicubic `interpolate` (a = -0.75,
  no antialiasing), separably; coordinates and weights in `x`'s float dtype (float32 for any
  other), as torch's, the sums in float64."""
  x = np.asarray(x)
  dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
  my = bicubic_matrix(x.shape[-2], int(size[0]), align_corners, dtype)
  mx = bicubic_matrix(x.shape[-1], int(size[1]), align_corners, dtype)
  return np.einsum("yh,...hw,xw->...yx", my, x.astype(np.float64), mx)


def check_pos_grid(pos_grid: Sequence[int]) -> tuple[int, ...]:
  """`pos_grid` as a tuple: () or two positive ints (the spatial grid the table was made for)."""
  grid = tuple(pos_grid or ())
  if grid and (len(grid) != 2 or any(int(g) != g or g < 1 for g in grid)):
    raise ValueError(
      f"pos_grid must be () or (height, width) in tokens, e.g. (14, 14); got {tuple(pos_grid)}"
    )
  return tuple(int(g) for g in grid)


@functools.lru_cache(maxsize=32)
def _position_table(grid: tuple[int, int, int], dim: int, pos_grid: tuple[int, ...]) -> np.ndarray:
  t, h, w = grid
  if not pos_grid or tuple(pos_grid) == (h, w):
    table = sinusoid_table(t * h * w, dim)
  else:
    gh, gw = pos_grid
    base = sinusoid_table(t * gh * gw, dim).reshape(t, gh, gw, dim).transpose(0, 3, 1, 2)
    table = resize_bicubic(base, (h, w)).transpose(0, 2, 3, 1).reshape(t * h * w, dim)
    table = table.astype(np.float32)
  table.setflags(write=False)
  return table


def position_table(grid: Sequence[int], dim: int, pos_grid: Sequence[int] = ()) -> np.ndarray:
  """float32 [T'·h·w, dim] (read-only, cached): the positions of a (T', h, w) token grid.

  `pos_grid=()`: the 1-D `sinusoid_table` of the T'·h·w tokens. `pos_grid=(gh, gw)`: the 1-D
  table of a (T', gh, gw) grid, each time slice resized bicubically to (h, w) (torch's
  `interpolate(mode="bicubic", align_corners=False)`, EVAD's `interpolate_pos_embed_online`);
  the table itself when (h, w) = (gh, gw).
  """
  grid = tuple(int(g) for g in grid)
  if len(grid) != 3 or min(grid) < 1:
    raise ValueError(f"grid must be (T', h, w) of positive ints, got {grid}")
  return _position_table(grid, int(dim), check_pos_grid(pos_grid))


def token_grid(
  num_frames: int, image_size: int | Sequence[int], tubelet: Sequence[int]
) -> tuple[int, int, int]:
  """(T', h, w) for a clip; raises if a size is not divisible by the tubelet."""
  height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  for name, size, step in (
    ("num_frames", num_frames, tubelet[0]),
    ("height", height, tubelet[1]),
    ("width", width, tubelet[2]),
  ):
    if size <= 0 or size % step:
      raise ValueError(f"{name}={size} is not a positive multiple of the tubelet {tuple(tubelet)}.")
  return num_frames // tubelet[0], height // tubelet[1], width // tubelet[2]


def gather_tokens(x: jax.Array, ids: jax.Array) -> jax.Array:
  """x [B, N, D], ids [B, K] -> [B, K, D]."""
  return jnp.take_along_axis(x, ids[..., None].astype(jnp.int32), axis=1)


def torch_linear(
  din: int,
  dout: int,
  *,
  use_bias: bool = True,
  init: str = "xavier",
  dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.Linear:
  """Linear with the reference initialisation (xavier-uniform or trunc-normal 0.02), bias 0."""
  kernel_init = (
    nnx.initializers.xavier_uniform()
    if init == "xavier"
    else nnx.initializers.truncated_normal(stddev=0.02)
  )
  return nnx.Linear(
    din,
    dout,
    use_bias=use_bias,
    kernel_init=kernel_init,
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )


def layer_norm(dim: int, dtype=jnp.float32, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class DropPath(nnx.Module):
  """Stochastic depth: drops the whole residual branch per sample (rate 0 = identity)."""

  def __init__(self, rate: float):
    self.rate = float(rate)

  def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None):
    if deterministic or self.rate == 0.0:
      return x
    if rngs is None:
      raise ValueError("deterministic=False with drop path needs rngs=nnx.Rngs(dropout=key).")
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep_mask = jax.random.bernoulli(rngs.dropout(), keep, shape)
    return jnp.where(keep_mask, x / keep, jnp.zeros_like(x))


ATTENTION = ("auto", "xla", "cudnn", "einsum")
POS_EMBEDS = ("sinusoid", "learned")
REMAT = ("none", "full", "dots")
_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def resolve_attention(attention: str, dtype, head_dim: int, backend: str | None = None) -> str:
  """The implementation `attention` runs as on `backend` (default: `jax.default_backend()`).

  "auto" is "cudnn" on GPU for a bfloat16 / float16 compute dtype and a head dim cuDNN's flash
  kernel takes on every GPU (a multiple of 8, <= 128), "xla" on TPU, otherwise "einsum" (the
  fastest on CPU, docs/benchmarks.md). "cudnn" with another dtype or head dim raises here; on a
  backend other than GPU it raises when called.
  """
  if attention not in ATTENTION:
    raise ValueError(f"Unknown attention {attention!r}; known: {', '.join(ATTENTION)}.")
  half = jnp.dtype(dtype) in _HALF
  if attention == "auto":
    backend = backend or jax.default_backend()
    if backend == "gpu" and half and head_dim % 8 == 0 and head_dim <= 128:
      return "cudnn"
    return "xla" if backend == "tpu" else "einsum"
  if attention == "cudnn":
    if not half:
      raise ValueError(
        f"attention='cudnn' (cuDNN flash attention) needs a bfloat16 or float16 compute dtype; "
        f"got {jnp.dtype(dtype).name}. Use dtype=jnp.bfloat16, or attention='xla' / 'einsum'."
      )
    if head_dim % 8 or head_dim > 256:
      raise ValueError(
        f"attention='cudnn' needs a head dim that is a multiple of 8 and <= 256 (<= 128 before "
        f"Hopper); got {head_dim}. Use attention='xla' or 'einsum'."
      )
  return attention


# Finite (as jax.nn.dot_product_attention's): a row with no valid key stays finite (uniform).
NEG_INF = -0.7 * float(np.finfo(np.float32).max)


def einsum_attention(q, k, v, q_lengths=None, kv_lengths=None):
  """softmax(q kᵀ / √d) v as two einsums, [B, N, H, d] in and out, in the head-major layout.

  The softmax is in float32 and its normalisation is deferred past the value product (one
  divide per output element rather than per logit), which is faster on CPU and, for the
  gradient, cheaper than `jax.nn.softmax`.
  """
  hd = q.shape[-1]
  q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # [B, H, N, d]
  logits = jnp.einsum(
    "bhqd,bhkd->bhqk", q * jnp.asarray(hd**-0.5, q.dtype), k, preferred_element_type=jnp.float32
  )
  if kv_lengths is not None:
    valid = jnp.arange(k.shape[2], dtype=jnp.int32) < kv_lengths[:, None]  # [B, S]
    logits = jnp.where(valid[:, None, None, :], logits, NEG_INF)
  weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True)))
  out = jnp.einsum(
    "bhqk,bhkd->bhqd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
  )
  out = out / weights.sum(axis=-1, keepdims=True)
  if q_lengths is not None:
    real = jnp.arange(q.shape[2], dtype=jnp.int32) < q_lengths[:, None]  # [B, T]
    out = jnp.where(real[:, None, :, None], out, 0.0)
  return out.transpose(0, 2, 1, 3).astype(v.dtype)


def dot_product_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  implementation: str,
  q_lengths: jax.Array | None = None,
  kv_lengths: jax.Array | None = None,
) -> jax.Array:
  """Scaled dot-product attention, q/k/v [B, N, H, d] -> [B, N, H, d], by `implementation`
  ("xla", "cudnn", "einsum"; `resolve_attention` maps "auto").

  `kv_lengths` [B] int32: keys at index >= length get no weight. `q_lengths` [B] int32: query
  rows at index >= length come out as zeros (jax.nn.dot_product_attention's rule).
  """
  lengths = [None if a is None else jnp.asarray(a, jnp.int32) for a in (q_lengths, kv_lengths)]
  if implementation == "einsum":
    return einsum_attention(q, k, v, *lengths)
  if implementation == "cudnn" and jax.default_backend() != "gpu":
    raise ValueError(
      f"attention='cudnn' runs only on NVIDIA GPUs (cuDNN flash attention); the backend is "
      f"{jax.default_backend()!r}. Use attention='auto', 'xla' or 'einsum'."
    )
  if implementation not in ("xla", "cudnn"):
    raise ValueError(f"Unknown attention implementation {implementation!r}.")
  return jax.nn.dot_product_attention(
    q,
    k,
    v,
    query_seq_lengths=lengths[0],
    key_value_seq_lengths=lengths[1],
    implementation=implementation,
  )


class Attention(nnx.Module):
  """Multi-head self-attention; qkv without bias plus learned q/v biases (k bias is zero).

  `attention` picks the kernel (the same numbers up to float rounding):
  - "xla": `jax.nn.dot_product_attention(implementation="xla")`;
  - "cudnn": cuDNN flash attention (NVIDIA GPUs, bfloat16 / float16 compute dtype, head dim a
    multiple of 8); a ValueError names what does not fit;
  - "einsum": einsum -> float32 softmax -> einsum (`einsum_attention`), the fastest on CPU;
  - "auto" (default): "cudnn" on GPU when the compute dtype is bfloat16 / float16 and the head
    dim fits, "xla" on TPU, "einsum" otherwise (CPU, or float32 on GPU). `implementation` is
    what it resolved to, fixed at construction (`resolve_attention`).
  `__call__(x, kv_lengths=, q_lengths=)`: optional [B] int32 counts of real tokens; keys past
  `kv_lengths` get no weight, outputs of queries past `q_lengths` are the projection of zeros.
  """

  def __init__(
    self,
    dim: int,
    num_heads: int,
    *,
    qkv_bias: bool = True,
    init: str = "xavier",
    attention: str = "auto",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.num_heads = num_heads
    self.dtype = dtype
    self.attention = attention
    self.implementation = resolve_attention(attention, dtype, dim // num_heads)
    self.qkv = torch_linear(dim, 3 * dim, use_bias=False, init=init, dtype=dtype, rngs=rngs)
    if qkv_bias:
      self.q_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
      self.v_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    else:
      self.q_bias = self.v_bias = None
    self.proj = torch_linear(dim, dim, init=init, dtype=dtype, rngs=rngs)

  def heads(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q, k, v [B, N, heads, D / heads] of x [B, N, D] (biases added)."""
    b, n, d = x.shape
    qkv = self.qkv(x)
    if self.q_bias is not None:
      bias = jnp.concatenate([self.q_bias[...], jnp.zeros_like(self.q_bias[...]), self.v_bias[...]])
      qkv = qkv + bias.astype(qkv.dtype)
    q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads), 3, axis=2)
    return q[:, :, 0], k[:, :, 0], v[:, :, 0]

  def __call__(self, x, *, kv_lengths=None, q_lengths=None):
    q, k, v = self.heads(x)
    out = dot_product_attention(
      q, k, v, implementation=self.implementation, q_lengths=q_lengths, kv_lengths=kv_lengths
    )
    return self.proj(out.reshape(x.shape))


def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU, x·(1 + erf(x/√2))/2: PyTorch's formula, within a float32 ulp (absolute
  7e-7 where 1 + erf cancels, below x ≈ -5.4). `jax.nn.gelu(approximate=False)` goes through
  erfc: 3.4x slower forward, 1.4x for the gradient on CPU (docs/benchmarks.md)."""
  return x * (0.5 + 0.5 * jax.lax.erf(x * np.asarray(1 / math.sqrt(2), x.dtype)))


class Mlp(nnx.Module):
  """fc1 -> exact GELU -> fc2."""

  def __init__(
    self, dim: int, hidden: int, *, init: str = "xavier", dtype=jnp.float32, rngs: nnx.Rngs
  ):
    self.fc1 = torch_linear(dim, hidden, init=init, dtype=dtype, rngs=rngs)
    self.fc2 = torch_linear(hidden, dim, init=init, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.fc2(gelu(self.fc1(x)))


def remat_policy(remat: str):
  """(rematerialise?, jax.checkpoint policy) for a `remat` choice (see `Block`)."""
  if remat not in REMAT:
    raise ValueError(f"Unknown remat {remat!r}; known: {', '.join(REMAT)}.")
  if remat == "dots":
    return True, jax.checkpoint_policies.dots_with_no_batch_dims_saveable
  return remat == "full", None


class Block(nnx.Module):
  """Pre-LN transformer block with optional layer-scale and drop path.

  `remat` (activation rematerialisation of the block's forward in the backward pass):
  "none"; "full" saves only the block's input (`nnx.remat`); "dots" saves the outputs of the
  projections and the MLP (`jax.checkpoint_policies.dots_with_no_batch_dims_saveable`) and
  recomputes the rest: LayerNorms, GELU and the attention itself, whose [B, heads, N, N]
  intermediates grow with N² (`checkpoint_dots` would keep its batched dots too).
  """

  def __init__(
    self,
    dim: int,
    num_heads: int,
    *,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_path: float = 0.0,
    layer_scale_init: float = 0.0,
    init: str = "xavier",
    attention: str = "auto",
    remat: str = "none",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    remat_policy(remat)
    self.remat = remat
    self.norm1 = layer_norm(dim, dtype, rngs=rngs)
    self.attn = Attention(
      dim, num_heads, qkv_bias=qkv_bias, init=init, attention=attention, dtype=dtype, rngs=rngs
    )
    self.norm2 = layer_norm(dim, dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), init=init, dtype=dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)
    if layer_scale_init > 0:
      self.gamma_1 = nnx.Param(jnp.full((dim,), layer_scale_init, jnp.float32))
      self.gamma_2 = nnx.Param(jnp.full((dim,), layer_scale_init, jnp.float32))
    else:
      self.gamma_1 = self.gamma_2 = None

  def __call__(
    self,
    x,
    *,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
    kv_lengths: jax.Array | None = None,
    q_lengths: jax.Array | None = None,
  ):
    """x [B, N, D] -> [B, N, D]; `kv_lengths` / `q_lengths` go to the attention (`Attention`)."""
    checkpointed, policy = remat_policy(self.remat)
    if not checkpointed:
      return self.forward(x, deterministic, rngs, kv_lengths, q_lengths)
    forward = nnx.remat(Block.forward, policy=policy, static_argnums=(2,))
    return forward(self, x, deterministic, rngs, kv_lengths, q_lengths)

  def forward(self, x, deterministic, rngs, kv_lengths=None, q_lengths=None):
    """The block without rematerialisation."""
    y = self.attn(self.norm1(x), kv_lengths=kv_lengths, q_lengths=q_lengths)
    if self.gamma_1 is not None:
      y = y * self.gamma_1[...].astype(y.dtype)
    x = x + self.drop_path(y, deterministic=deterministic, rngs=rngs)
    y = self.mlp(self.norm2(x))
    if self.gamma_2 is not None:
      y = y * self.gamma_2[...].astype(y.dtype)
    return x + self.drop_path(y, deterministic=deterministic, rngs=rngs)


class TubeletEmbed(nnx.Module):
  """Conv3d with kernel = stride = tubelet, flattened to [B, N, D] in (t, h, w) order."""

  def __init__(
    self,
    dim: int,
    tubelet: Sequence[int],
    in_channels: int = 3,
    *,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.tubelet = tuple(int(s) for s in tubelet)
    fan_in = in_channels * math.prod(self.tubelet)
    bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default Conv3d initialisation.
    self.proj = nnx.Conv(
      in_channels,
      dim,
      kernel_size=self.tubelet,
      strides=self.tubelet,
      padding="VALID",
      kernel_init=nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
      bias_init=lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound),
      dtype=dtype,
      param_dtype=jnp.float32,
      rngs=rngs,
    )

  def __call__(self, video):
    if video.ndim != 5:
      raise ValueError(f"video must be [B, T, H, W, C]; got shape {video.shape}.")
    t, h, w = token_grid(video.shape[1], video.shape[2:4], self.tubelet)
    # kernel == stride, so the Conv3d is a matmul on non-overlapping tubelets; written that way
    # it is ~4x faster on CPU (XLA's strided conv) and the same on GPU/TPU. Params stay Conv's.
    b, c = video.shape[0], video.shape[-1]
    pt, ph, pw = self.tubelet
    x = video.reshape(b, t, pt, h, ph, w, pw, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    x = x.reshape(b, t * h * w, pt * ph * pw * c)
    kernel = self.proj.kernel[...].astype(video.dtype)
    x = x @ kernel.reshape(-1, kernel.shape[-1])
    return x + self.proj.bias[...].astype(x.dtype)


def drop_path_rates(rate: float, depth: int) -> list[float]:
  """Linearly increasing stochastic-depth rates, 0 at the first block (reference schedule)."""
  return [float(r) for r in np.linspace(0.0, rate, depth)] if depth else []


class VideoViT(nnx.Module):
  """Video ViT encoder.

  Args:
    size: "S", "B", "L", "H" or None for a custom (dim, depth, num_heads).
    num_frames, image_size: the clip the model is built for (`image_size` an int or
      (height, width)); sets `grid`. Without `pos_grid`, inputs of other sizes divisible by
      the tubelet work too (the position table is built for the actual token count).
    pos_grid: () for the 1-D table of the grid's tokens, or (gh, gw), the spatial grid the
      (pre-trained) table was laid out for (VideoMAE: (14, 14)): its slices are bicubically
      interpolated to the grid's (h, w) (`position_table`); inputs must then be of the grid.
    pos_embed: "sinusoid" (the reference's fixed table, above) or "learned": a trained
      [T'·h·w, dim] parameter `pos_embed` (trunc-normal 0.02 init, as the official
      `use_learnable_pos_emb`); inputs must then be of the grid. `mgvm.weights.resize`
      interpolates one to another grid.
    final_norm: LayerNorm after the last block (MAE encoder); the mean-pooling
      classifier uses `fc_norm` instead.
    layer_scale_init: > 0 turns on layer-scale with that initial value.
    attention: "auto" | "xla" | "cudnn" | "einsum", the attention kernel (`Attention`).
    remat: "none" | "full" | "dots", rematerialisation of each block (`Block`).
    dtype: compute dtype (params stay float32).
  """

  def __init__(
    self,
    size: str | None = "B",
    *,
    dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
    num_frames: int = 16,
    image_size: int | Sequence[int] = 224,
    tubelet: Sequence[int] = (2, 16, 16),
    in_channels: int = 3,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_path_rate: float = 0.0,
    layer_scale_init: float = 0.0,
    final_norm: bool = True,
    init: str = "xavier",
    attention: str = "auto",
    remat: str = "none",
    pos_grid: Sequence[int] = (),
    pos_embed: str = "sinusoid",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    spec = resolve_size(size, dim=dim, depth=depth, num_heads=num_heads)
    if pos_embed not in POS_EMBEDS:
      raise ValueError(f"pos_embed must be one of {POS_EMBEDS}; got {pos_embed!r}")
    if pos_embed == "learned" and pos_grid:
      raise ValueError(
        "pos_grid interpolates the fixed sinusoid table; a learned pos_embed has none"
      )
    self.dim, self.depth, self.num_heads = spec.dim, spec.depth, spec.num_heads
    self.tubelet = tuple(int(s) for s in tubelet)
    self.grid = token_grid(num_frames, image_size, self.tubelet)
    self.pos_grid = check_pos_grid(pos_grid)
    position_table(self.grid, spec.dim, self.pos_grid)  # computed (and cached) once, here
    self.dtype = dtype
    self.patch_embed = TubeletEmbed(spec.dim, self.tubelet, in_channels, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List(
      [
        Block(
          spec.dim,
          spec.num_heads,
          mlp_ratio=mlp_ratio,
          qkv_bias=qkv_bias,
          drop_path=r,
          layer_scale_init=layer_scale_init,
          init=init,
          attention=attention,
          remat=remat,
          dtype=dtype,
          rngs=rngs,
        )
        for r in drop_path_rates(drop_path_rate, spec.depth)
      ]
    )
    self.norm = layer_norm(spec.dim, dtype, rngs=rngs) if final_norm else None
    if pos_embed == "learned":
      init = nnx.initializers.truncated_normal(stddev=0.02)
      self.pos_embed = nnx.Param(init(rngs.params(), (self.num_tokens, spec.dim), jnp.float32))
    else:
      self.pos_embed = None

  @property
  def num_tokens(self) -> int:
    return math.prod(self.grid)

  def positions(self, num_tokens: int) -> np.ndarray | jax.Array:
    """float32 [num_tokens, dim]: the position table for `num_tokens` tokens (`position_table`
    of `grid`, or the learned `pos_embed`; without `pos_grid` and a learned table another count
    gets the 1-D sinusoid table of that many tokens)."""
    if self.pos_embed is not None:
      if num_tokens != self.num_tokens:
        raise ValueError(
          f"{num_tokens} tokens, but this encoder's learned pos_embed is for its grid {self.grid} "
          f"of {self.num_tokens} tokens (mgvm.weights.resize interpolates it to another grid)"
        )
      return self.pos_embed[...]
    if num_tokens == self.num_tokens:
      return position_table(self.grid, self.dim, self.pos_grid)
    if self.pos_grid:
      raise ValueError(
        f"{num_tokens} tokens, but this encoder interpolates its positions (pos_grid="
        f"{self.pos_grid}) for its grid {self.grid} of {self.num_tokens} tokens only"
      )
    return sinusoid_table(num_tokens, self.dim)

  def embed(self, video: jax.Array) -> jax.Array:
    """Tubelet patch embeddings (before positions): [B, T, H, W, C] -> [B, N, D]."""
    return self.patch_embed(video.astype(self.dtype))

  def encode(
    self,
    tokens: jax.Array,
    ids_keep: jax.Array | None = None,
    *,
    deterministic: bool = True,
    rngs: nnx.Rngs | None = None,
    kv_lengths: jax.Array | None = None,
  ) -> jax.Array:
    """Adds positions to all N tokens, keeps `ids_keep` [B, K] (all if None), runs the blocks.

    `kv_lengths` [B] int32: only the first `kv_lengths[b]` kept tokens of sample b are real,
    the rest padding that no token attends to (their own outputs are meaningless).
    """
    x = tokens + jnp.asarray(self.positions(tokens.shape[1]), tokens.dtype)[None]
    if ids_keep is not None:
      x = gather_tokens(x, ids_keep)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs, kv_lengths=kv_lengths)
    return self.norm(x) if self.norm is not None else x

  def __call__(self, video, ids_keep=None, *, deterministic: bool = True, rngs=None):
    return self.encode(self.embed(video), ids_keep, deterministic=deterministic, rngs=rngs)
