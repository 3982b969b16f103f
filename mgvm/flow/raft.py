"""RAFT optical flow (Teed & Deng, ECCV 2020) in Flax NNX: `raft_small` and `raft_large`.

The modules and their parameter names follow torchvision's `torchvision.models.optical_flow`
(`mgvm.flow.raft_weights` converts its state dicts and princeton-vl's checkpoints), and the
forward pass computes what torchvision's does, iteration by iteration:
1. a feature encoder (instance norm) on both frames and a context encoder on the first, each
   downsampling by 8; the context splits into the GRU's initial hidden state (tanh) and the
   context features (ReLU);
2. the all-pairs correlation of the two feature maps (dot products / sqrt(C)), average-pooled
   `levels` − 1 times over frame b's axes: built once per pair;
3. `iterations` updates: look up the pyramid around each pixel's current match (a (2r+1)²
   window per level, bilinear, zeros outside), motion encoder, GRU, flow head, add the delta;
4. the 1/8 flow upsampled ×8: bilinearly (align_corners) for small, by the learned convex
   combination of the 3×3 neighbours for large.
Images are [B, H, W, 3] in [−1, 1] (channels last), H and W multiples of 8. The flow is
(dx, dy) px on image 1's grid with image2(x + flow(x)) ≈ image1(x): mgvm's convention
(docs/flow.md). `RaftFlow` wraps a model as an `estimate`-style flow function on
ImageNet-normalised frames of any size (the [−1, 1] conversion and any resizing inside).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.data.device_ops import MEAN, STD

__all__ = [
  "RAFT",
  "SPECS",
  "RaftFlow",
  "RaftSpec",
  "abstract",
  "build",
  "flow_function",
  "to_raft_range",
  "variables",
  "work_size",
]


@dataclasses.dataclass(frozen=True)
class RaftSpec:
  """The sizes of one RAFT variant (torchvision's `_raft` arguments)."""

  feature_layers: tuple[int, ...]  # stem, layer1, layer2, layer3, output channels
  context_layers: tuple[int, ...]
  block: str  # "bottleneck" (small) or "residual" (large)
  context_norm: str  # "none" (small) or "batch" (large); the feature encoder's is "instance"
  levels: int  # correlation pyramid levels
  radius: int  # lookup radius: (2r+1)² samples per level
  corr_layers: tuple[int, ...]  # motion encoder convs on the correlation features
  flow_layers: tuple[int, int]  # motion encoder convs on the flow
  motion_channels: int  # motion features, the flow's 2 channels included
  hidden: int  # GRU state; the context is context_layers[-1] − hidden channels
  gru_kernels: tuple[tuple[int, int], ...]  # one ConvGRU per kernel, applied in turn
  head_hidden: int  # flow head
  convex: bool  # learned convex ×8 upsampling (large) instead of bilinear (small)


SPECS = {
  "raft_small": RaftSpec(
    feature_layers=(32, 32, 64, 96, 128),
    context_layers=(32, 32, 64, 96, 160),
    block="bottleneck",
    context_norm="none",
    levels=4,
    radius=3,
    corr_layers=(96,),
    flow_layers=(64, 32),
    motion_channels=82,
    hidden=96,
    gru_kernels=((3, 3),),
    head_hidden=128,
    convex=False,
  ),
  "raft_large": RaftSpec(
    feature_layers=(64, 64, 96, 128, 256),
    context_layers=(64, 64, 96, 128, 256),
    block="residual",
    context_norm="batch",
    levels=4,
    radius=4,
    corr_layers=(256, 192),
    flow_layers=(128, 64),
    motion_channels=128,
    hidden=128,
    gru_kernels=((1, 5), (5, 1)),
    head_hidden=256,
    convex=True,
  ),
}
EPS = 1e-5  # instance and batch norm, as torch's defaults


def _conv(cin: int, cout: int, kernel, stride: int = 1, *, rngs: nnx.Rngs, precision=None):
  """Conv with bias and torch's symmetric "same" padding (k − 1) / 2 (stride 2 included)."""
  kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
  return nnx.Conv(
    cin,
    cout,
    (kh, kw),
    strides=stride,
    padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
    precision=precision,
    rngs=rngs,
  )


def instance_norm(x: jax.Array) -> jax.Array:
  """Per sample and channel over H, W (biased variance, no affine): torch's InstanceNorm2d."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + EPS)


class ConvNorm(nnx.Module):
  """Conv (with bias) → norm ("none" | "instance" | "batch", running statistics) → ReLU: one
  torchvision `Conv2dNormActivation(bias=True)`."""

  def __init__(
    self, cin, cout, kernel, stride=1, *, norm="none", relu=True, rngs: nnx.Rngs, precision=None
  ):
    self.conv = _conv(cin, cout, kernel, stride, rngs=rngs, precision=precision)
    self.norm = (
      nnx.BatchNorm(cout, use_running_average=True, epsilon=EPS, rngs=rngs)
      if norm == "batch"
      else None
    )
    self.instance = norm == "instance"
    self.relu = relu

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv(x)
    if self.instance:
      x = instance_norm(x)
    elif self.norm is not None:
      x = self.norm(x)
    return jax.nn.relu(x) if self.relu else x


class ResidualBlock(nnx.Module):
  """Two 3×3 ConvNorms plus the input (1×1 ConvNorm projection when strided), then ReLU."""

  def __init__(self, cin, cout, stride, *, norm, rngs, precision=None):
    kw = dict(norm=norm, rngs=rngs, precision=precision)
    self.convnormrelu1 = ConvNorm(cin, cout, 3, stride, **kw)
    self.convnormrelu2 = ConvNorm(cout, cout, 3, **kw)
    self.downsample = None if stride == 1 else ConvNorm(cin, cout, 1, stride, relu=False, **kw)

  def __call__(self, x):
    y = self.convnormrelu2(self.convnormrelu1(x))
    return jax.nn.relu((x if self.downsample is None else self.downsample(x)) + y)


class BottleneckBlock(nnx.Module):
  """1×1 → 3×3 (strided) → 1×1 ConvNorms at a quarter width, plus the input, then ReLU."""

  def __init__(self, cin, cout, stride, *, norm, rngs, precision=None):
    kw = dict(norm=norm, rngs=rngs, precision=precision)
    self.convnormrelu1 = ConvNorm(cin, cout // 4, 1, **kw)
    self.convnormrelu2 = ConvNorm(cout // 4, cout // 4, 3, stride, **kw)
    self.convnormrelu3 = ConvNorm(cout // 4, cout, 1, **kw)
    self.downsample = None if stride == 1 else ConvNorm(cin, cout, 1, stride, relu=False, **kw)

  def __call__(self, x):
    y = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
    return jax.nn.relu((x if self.downsample is None else self.downsample(x)) + y)


class Encoder(nnx.Module):
  """Feature / context encoder: 7×7 stride-2 stem, three stages of 2 blocks (strides 1, 2, 2),
  1×1 output conv: [B, H, W, 3] → [B, H/8, W/8, layers[-1]]."""

  def __init__(self, layers, block: str, norm: str, *, rngs: nnx.Rngs, precision=None):
    kind = BottleneckBlock if block == "bottleneck" else ResidualBlock
    kw = dict(norm=norm, rngs=rngs, precision=precision)
    self.convnormrelu = ConvNorm(3, layers[0], 7, 2, **kw)
    stages = []
    for cin, cout, stride in zip(layers[:3], layers[1:4], (1, 2, 2)):
      stages.append(nnx.List([kind(cin, cout, stride, **kw), kind(cout, cout, 1, **kw)]))
    self.layer1, self.layer2, self.layer3 = stages
    self.conv = _conv(layers[3], layers[4], 1, rngs=rngs, precision=precision)

  def __call__(self, x):
    x = self.convnormrelu(x)
    for stage in (self.layer1, self.layer2, self.layer3):
      for block in stage:
        x = block(x)
    return self.conv(x)


class MotionEncoder(nnx.Module):
  """Correlation features and the current flow → motion features (the flow appended last)."""

  def __init__(self, spec: RaftSpec, *, rngs: nnx.Rngs, precision=None):
    kw = dict(rngs=rngs, precision=precision)
    corr_in = spec.levels * (2 * spec.radius + 1) ** 2
    c1 = spec.corr_layers[0]
    self.convcorr1 = ConvNorm(corr_in, c1, 1, **kw)
    self.convcorr2 = (
      ConvNorm(c1, spec.corr_layers[1], 3, **kw) if len(spec.corr_layers) > 1 else None
    )
    f1, f2 = spec.flow_layers
    self.convflow1 = ConvNorm(2, f1, 7, **kw)
    self.convflow2 = ConvNorm(f1, f2, 3, **kw)
    self.conv = ConvNorm(spec.corr_layers[-1] + f2, spec.motion_channels - 2, 3, **kw)

  def __call__(self, flow, corr):
    c = self.convcorr1(corr)
    if self.convcorr2 is not None:
      c = self.convcorr2(c)
    f = self.convflow2(self.convflow1(flow))
    return jnp.concatenate([self.conv(jnp.concatenate([c, f], -1)), flow], -1)


class ConvGRU(nnx.Module):
  """Convolutional GRU: z, r gates and candidate q from [h, x] (q from [r·h, x])."""

  def __init__(self, hidden: int, inputs: int, kernel, *, rngs: nnx.Rngs, precision=None):
    kw = dict(rngs=rngs, precision=precision)
    self.convz = _conv(hidden + inputs, hidden, kernel, **kw)
    self.convr = _conv(hidden + inputs, hidden, kernel, **kw)
    self.convq = _conv(hidden + inputs, hidden, kernel, **kw)

  def __call__(self, h, x):
    hx = jnp.concatenate([h, x], -1)
    z = jax.nn.sigmoid(self.convz(hx))
    r = jax.nn.sigmoid(self.convr(hx))
    q = jnp.tanh(self.convq(jnp.concatenate([r * h, x], -1)))
    return (1 - z) * h + z * q


class RecurrentBlock(nnx.Module):
  """One ConvGRU per kernel shape, applied in turn (large: 1×5 then 5×1)."""

  def __init__(self, spec: RaftSpec, *, rngs: nnx.Rngs, precision=None):
    inputs = spec.motion_channels + spec.context_layers[-1] - spec.hidden
    grus = [
      ConvGRU(spec.hidden, inputs, k, rngs=rngs, precision=precision) for k in spec.gru_kernels
    ]
    self.convgru1 = grus[0]
    self.convgru2 = grus[1] if len(grus) > 1 else None

  def __call__(self, h, x):
    h = self.convgru1(h, x)
    return h if self.convgru2 is None else self.convgru2(h, x)


class FlowHead(nnx.Module):
  """Hidden state → delta flow (3×3 conv, ReLU, 3×3 conv to 2 channels)."""

  def __init__(self, cin: int, hidden: int, *, rngs: nnx.Rngs, precision=None):
    self.conv1 = _conv(cin, hidden, 3, rngs=rngs, precision=precision)
    self.conv2 = _conv(hidden, 2, 3, rngs=rngs, precision=precision)

  def __call__(self, x):
    return self.conv2(jax.nn.relu(self.conv1(x)))


class UpdateBlock(nnx.Module):
  """Motion encoder → GRU on [context, motion] → flow head."""

  def __init__(self, spec: RaftSpec, *, rngs: nnx.Rngs, precision=None):
    kw = dict(rngs=rngs, precision=precision)
    self.motion_encoder = MotionEncoder(spec, **kw)
    self.recurrent_block = RecurrentBlock(spec, **kw)
    self.flow_head = FlowHead(spec.hidden, spec.head_hidden, **kw)

  def __call__(self, hidden, context, corr, flow):
    x = jnp.concatenate([context, self.motion_encoder(flow, corr)], -1)
    hidden = self.recurrent_block(hidden, x)
    return hidden, self.flow_head(hidden)


class MaskPredictor(nnx.Module):
  """Hidden state → the 9 × 8 × 8 convex-upsampling logits, scaled by 0.25 (as trained)."""

  def __init__(self, cin: int, *, rngs: nnx.Rngs, precision=None):
    self.convrelu = ConvNorm(cin, 256, 3, rngs=rngs, precision=precision)
    self.conv = _conv(256, 8 * 8 * 9, 1, rngs=rngs, precision=precision)

  def __call__(self, x):
    return 0.25 * self.conv(self.convrelu(x))


# ----------------------------------------------------------------------------- correlation


def correlation_pyramid(fmap1: jax.Array, fmap2: jax.Array, levels: int, precision=None):
  """[levels] of [B, h·w, h_l, w_l]: the dot products of every pixel of fmap1 [B, h, w, C] with
  every pixel of fmap2, / sqrt(C), then average-pooled 2×2 over fmap2's axes (odd rows and
  columns dropped, as torch's avg_pool2d)."""
  b, h, w, c = fmap1.shape
  corr = jnp.einsum(
    "bpc,bqc->bpq", fmap1.reshape(b, h * w, c), fmap2.reshape(b, h * w, c), precision=precision
  )
  corr = (corr / jnp.sqrt(jnp.float32(c))).reshape(b, h * w, h, w)
  pyramid = [corr]
  for _ in range(levels - 1):
    hl, wl = corr.shape[2] // 2, corr.shape[3] // 2
    corr = corr[:, :, : 2 * hl, : 2 * wl].reshape(b, h * w, hl, 2, wl, 2).mean(axis=(3, 5))
    pyramid.append(corr)
  return pyramid


def _window(volume: jax.Array, x: jax.Array, y: jax.Array, radius: int) -> jax.Array:
  """[N, (2r+1)²]: `volume` [N, h, w] sampled bilinearly at (x + i, y + j) for i, j in
  [−r, r] (zeros outside: grid_sample's zero padding), channel (i + r)·(2r+1) + (j + r).

  The offsets are integers, so every sample of a query shares one fractional part: one gather
  of the (2r+2)² integer window, then the 4-tap blend.
  """
  n, h, w = volume.shape
  side = 2 * radius + 2
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[:, None, None], (y - y0)[:, None, None]
  steps = jnp.arange(side, dtype=jnp.int32) - radius
  xs = x0.astype(jnp.int32)[:, None] + steps  # [N, side]
  ys = y0.astype(jnp.int32)[:, None] + steps
  inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
  index = jnp.clip(ys, 0, h - 1)[:, :, None] * w + jnp.clip(xs, 0, w - 1)[:, None, :]
  win = jnp.take_along_axis(volume.reshape(n, h * w), index.reshape(n, -1), axis=1)
  win = jnp.where(inside, win.reshape(n, side, side), 0.0)  # [N, y, x]
  out = (
    (1 - fx) * (1 - fy) * win[:, :-1, :-1]
    + fx * (1 - fy) * win[:, :-1, 1:]
    + (1 - fx) * fy * win[:, 1:, :-1]
    + fx * fy * win[:, 1:, 1:]
  )
  return jnp.swapaxes(out, 1, 2).reshape(n, -1)  # x offset major, as torchvision's channels


def lookup(pyramid, coords: jax.Array, radius: int) -> jax.Array:
  """[B, h, w, levels·(2r+1)²]: each level's window around `coords` [B, h, w, 2] / 2^level."""
  b, h, w, _ = coords.shape
  flat = coords.reshape(b * h * w, 2)
  out = []
  for level, volume in enumerate(pyramid):
    scaled = flat / 2**level
    out.append(_window(volume.reshape(b * h * w, *volume.shape[2:]), *scaled.T, radius))
  return jnp.concatenate(out, -1).reshape(b, h, w, -1)


# ----------------------------------------------------------------------------- upsampling


def _linear_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
  """Resize `axis` to `size` linearly with aligned corners (torch's align_corners=True)."""
  n = x.shape[axis]
  scale = (n - 1) / (size - 1) if size > 1 else 0.0
  pos = jnp.arange(size, dtype=jnp.float32) * jnp.float32(scale)
  i0 = jnp.floor(pos).astype(jnp.int32)
  i1 = jnp.minimum(i0 + 1, n - 1)
  lam = (pos - i0).reshape((-1,) + (1,) * (x.ndim - axis - 1))
  return (1 - lam) * jnp.take(x, i0, axis=axis) + lam * jnp.take(x, i1, axis=axis)


def upsample_bilinear(flow: jax.Array, factor: int = 8) -> jax.Array:
  """[B, h, w, 2] → [B, factor·h, factor·w, 2]: bilinear (aligned corners), vectors × factor."""
  _, h, w, _ = flow.shape
  return factor * _linear_axis(_linear_axis(flow, 1, factor * h), 2, factor * w)


def upsample_convex(flow: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, h, w, 2] → [B, 8h, 8w, 2]: each fine pixel a softmax-weighted mix of 8 × its coarse
  pixel's 3×3 neighbours (zeros outside); `mask` [B, h, w, 576] = (neighbour, row, column)."""
  b, h, w, _ = flow.shape
  weights = jax.nn.softmax(mask.reshape(b, h, w, 9, 8, 8), axis=3)
  padded = jnp.pad(8 * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
  neighbours = jnp.stack(
    [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=3
  )  # [B, h, w, 9, 2]
  up = jnp.sum(weights[..., None] * neighbours[:, :, :, :, None, None, :], axis=3)
  return up.transpose(0, 1, 3, 2, 4, 5).reshape(b, 8 * h, 8 * w, 2)


# ----------------------------------------------------------------------------- the model


class RAFT(nnx.Module):
  """RAFT with the sizes of `spec` (`SPECS["raft_small"]` or `SPECS["raft_large"]`)."""

  def __init__(self, spec: RaftSpec, *, rngs: nnx.Rngs, precision=None):
    kw = dict(rngs=rngs, precision=precision)
    self.spec = spec
    self.precision = precision
    self.feature_encoder = Encoder(spec.feature_layers, spec.block, "instance", **kw)
    self.context_encoder = Encoder(spec.context_layers, spec.block, spec.context_norm, **kw)
    self.update_block = UpdateBlock(spec, **kw)
    self.mask_predictor = MaskPredictor(spec.hidden, **kw) if spec.convex else None

  def _upsample(self, coords1, coords0, hidden):
    flow = coords1 - coords0
    if self.mask_predictor is None:
      return upsample_bilinear(flow)
    return upsample_convex(flow, self.mask_predictor(hidden))

  def __call__(
    self,
    image1: jax.Array,
    image2: jax.Array,
    *,
    iterations: int = 12,
    all_iterations: bool = False,
    unroll: bool = False,
  ) -> jax.Array:
    """Flow [B, H, W, 2] after `iterations` updates (`all_iterations`: [iterations, B, H, W, 2],
    every update's, as torchvision's list) from image1 to image2 [B, H, W, 3] in [−1, 1].

    The updates are a `lax.scan` (one compiled body); `unroll=True` unrolls it, e.g. for XLA's
    cost analysis, which counts a loop's body once whatever its trip count.
    """
    b, height, width, _ = image1.shape
    if image2.shape != image1.shape or height % 8 or width % 8:
      raise ValueError(
        f"RAFT needs two images [B, H, W, 3] of one shape with H, W multiples of 8; got "
        f"{image1.shape} and {image2.shape}"
      )
    if iterations < 1:
      raise ValueError(f"RAFT needs iterations >= 1, got {iterations}")
    spec = self.spec
    h, w = height // 8, width // 8
    if min(h, w) < 2 ** (spec.levels - 1):
      raise ValueError(
        f"RAFT's {spec.levels}-level correlation pyramid needs images of at least "
        f"{8 * 2 ** (spec.levels - 1)} px a side; got {height}x{width}"
      )
    fmaps = self.feature_encoder(jnp.concatenate([image1, image2]))
    pyramid = correlation_pyramid(fmaps[:b], fmaps[b:], spec.levels, self.precision)
    context = self.context_encoder(image1)
    hidden = jnp.tanh(context[..., : spec.hidden])
    context = jax.nn.relu(context[..., spec.hidden :])
    ys, xs = jnp.meshgrid(
      jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    coords0 = jnp.broadcast_to(jnp.stack([xs, ys], -1), (b, h, w, 2))

    def update(carry, _):
      hidden, coords1 = carry
      corr = lookup(pyramid, coords1, spec.radius)
      hidden, delta = self.update_block(hidden, context, corr, coords1 - coords0)
      coords1 = coords1 + delta
      out = self._upsample(coords1, coords0, hidden) if all_iterations else None
      return (hidden, coords1), out

    (hidden, coords1), flows = jax.lax.scan(
      update, (hidden, coords0), None, length=iterations, unroll=iterations if unroll else 1
    )
    return flows if all_iterations else self._upsample(coords1, coords0, hidden)


def abstract(variant: str, *, precision=None) -> RAFT:
  """`RAFT` of `variant` ("raft_small" | "raft_large") with shapes but no values (nnx.eval_shape):
  the skeleton that weights are assigned into."""
  if variant not in SPECS:
    raise ValueError(f"unknown RAFT variant {variant!r}; known: {', '.join(SPECS)}")
  return nnx.eval_shape(lambda: RAFT(SPECS[variant], rngs=nnx.Rngs(0), precision=precision))


def variables(model: RAFT) -> dict[str, nnx.Variable]:
  """{NNX path: variable} of every parameter and batch statistic of `model`."""
  return {
    ".".join(str(p) for p in path): var
    for path, var in nnx.iter_graph(model)
    if isinstance(var, (nnx.Param, nnx.BatchStat))
  }


def build(variant: str, *, seed: int = 0, precision=None) -> RAFT:
  """A randomly initialised `RAFT` of `variant`: kernels N(0, 1 / fan-in), biases 0, batch norm
  the identity. Drawn with NumPy (seeded) rather than jax.random: initialising ~100 convs
  eagerly compiles one program per shape (seconds); the flow is meaningless either way."""
  model = abstract(variant, precision=precision)
  rng = np.random.default_rng(seed)
  with jax.ensure_compile_time_eval():
    for path, var in variables(model).items():
      shape, leaf = var.get_value().shape, path.rsplit(".", 1)[-1]
      if leaf == "kernel":
        value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
      else:
        value = np.ones(shape) if leaf in ("scale", "var") else np.zeros(shape)
      var.set_value(jnp.asarray(value, jnp.float32))
  return model


# ----------------------------------------------------------------------------- flow function


def to_raft_range(frames: jax.Array, mean=MEAN, std=STD) -> jax.Array:
  """Normalised frames (x − mean) / std of RGB in [0, 1] → RAFT's input range [−1, 1]."""
  rgb = frames.astype(jnp.float32) * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)
  return 2 * rgb - 1


def work_size(height: int, width: int, levels: int = 4) -> tuple[int, int]:
  """The size RAFT runs at for frames of (height, width): each side rounded up to a multiple
  of 8 and to at least 8 · 2^(levels − 1) px (the pyramid's coarsest level keeps a pixel)."""
  least = 8 * 2 ** (levels - 1)
  return tuple(max(least, -(-side // 8) * 8) for side in (height, width))


class RaftFlow:
  """`flow(frame_a, frame_b)` → [B, H, W, 2] from a RAFT model: `mgvm.flow.estimate`'s interface
  and convention, on normalised frames [B, H, W, 3] ((x − mean) / std of RGB in [0, 1]).

  Frames whose sides are not multiples of 8, or shorter than the pyramid needs (`work_size`),
  are resized bilinearly for RAFT and the flow resized back (vectors scaled to the frame).
  Hashable by identity, so it can be a static argument of `jax.jit` (MGMAE's `flow_fn`); its
  parameters enter the compiled program as constants.
  """

  def __init__(self, model: RAFT, *, iterations: int = 6, mean=MEAN, std=STD, unroll=False):
    self.model = model
    self.iterations = int(iterations)
    self.mean, self.std = tuple(mean), tuple(std)
    self.unroll = bool(unroll)  # RAFT.__call__'s: for cost analysis

  def __repr__(self):
    kind = "raft_large" if self.model.spec.convex else "raft_small"
    return f"RaftFlow({kind}, iterations={self.iterations})"

  def __call__(self, frame_a: jax.Array, frame_b: jax.Array) -> jax.Array:
    if frame_a.shape != frame_b.shape or frame_a.ndim != 4:
      raise ValueError(
        f"need two frames [B, H, W, C] of one shape, got {frame_a.shape} and {frame_b.shape}"
      )
    b, height, width, _ = frame_a.shape
    size = work_size(height, width, self.model.spec.levels)
    a, c = (to_raft_range(f, self.mean, self.std) for f in (frame_a, frame_b))
    if size != (height, width):
      a, c = (jax.image.resize(f, (b, *size, 3), "linear", antialias=False) for f in (a, c))
    flow = self.model(a, c, iterations=self.iterations, unroll=self.unroll)
    if size != (height, width):
      flow = jax.image.resize(flow, (b, height, width, 2), "linear", antialias=False)
      flow = flow * jnp.asarray([width / size[1], height / size[0]], jnp.float32)
    return flow.astype(jnp.float32)


@functools.lru_cache(maxsize=8)
def flow_function(variant: str, weights: str, iterations: int = 6) -> RaftFlow:
  """The `RaftFlow` of the converted checkpoint `weights` (`mgvm.flow.raft_weights`), checked
  to be `variant`; cached, so every masker built with the same arguments shares one function
  (and one compiled program)."""
  from mgvm.flow import raft_weights  # the converters import this module

  return RaftFlow(raft_weights.load(weights, variant=variant), iterations=iterations)
