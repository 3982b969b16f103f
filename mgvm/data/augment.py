"""VideoMAE fine-tuning augmentations for one clip `[T, H, W, 3]`: RandAugment and random erasing.

`rand_augment` is timm's `rand_augment_transform("rand-m7-n4-mstd0.5-inc1")` as VideoMAE applies
it to a list of PIL frames (`video_transforms.create_random_augment`): the ops and their
parameters are drawn once per clip and applied to every frame; image statistics (AutoContrast,
Equalize, Contrast) are per frame, as PIL computes them per image. All ops reproduce Pillow's
uint8 results (checked bit-exact against Pillow 13 on x86-64); the geometric ops are PIL's
BILINEAR, where VideoMAE runs with `--train_interpolation bicubic`. `random_erasing` is
VideoMAE's `RandomErasing` (`--reprob 0.25 --remode pixel --recount 1`) on the normalised clip.

Every random function takes an explicit stateless `seed` (a [2] int tensor), so eager, graph and
tf.data runs agree exactly. The individual ops are public so that they can be checked against PIL;
each takes `[T, H, W, 3]` uint8 (float input is rounded and clipped to uint8) and returns uint8.
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

# timm `_RAND_INCREASING_TRANSFORMS`, in its order (the op index of `rand_augment_params`).
OP_NAMES = (
  "AutoContrast",
  "Equalize",
  "Invert",
  "Rotate",
  "PosterizeIncreasing",
  "SolarizeIncreasing",
  "SolarizeAdd",
  "ColorIncreasing",
  "ContrastIncreasing",
  "BrightnessIncreasing",
  "SharpnessIncreasing",
  "ShearX",
  "ShearY",
  "TranslateXRel",
  "TranslateYRel",
)
MAX_LEVEL = 10.0
# timm's `_FILL`: VideoMAE's `create_random_augment` passes no `img_mean`, so this grey is used.
FILL = (128, 128, 128)


# Public ops are plain TF: tf.data / tf.function callers skip autograph's (slow) source
# conversion of them, which would otherwise dominate tracing.
_plain = tf.autograph.experimental.do_not_convert


def _split(seed, num: int) -> tf.Tensor:
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


@_plain
def to_uint8(frames) -> tf.Tensor:
  """uint8 frames; other dtypes are rounded (half to even) and clipped to [0, 255]."""
  frames = tf.convert_to_tensor(frames)
  if frames.dtype == tf.uint8:
    return frames
  return tf.cast(tf.clip_by_value(tf.round(tf.cast(frames, tf.float32)), 0.0, 255.0), tf.uint8)


def _int(frames) -> tf.Tensor:
  return tf.cast(to_uint8(frames), tf.int32)


def _u8(values) -> tf.Tensor:
  return tf.cast(values, tf.uint8)


def _f64(value) -> tf.Tensor:
  """float64 tensor; Python floats are converted without a float32 detour."""
  return tf.cast(tf.convert_to_tensor(value, dtype_hint=tf.float64), tf.float64)


# ----------------------------------------------------------------------------- pixel ops (PIL)


@_plain
def invert(frames) -> tf.Tensor:
  """`ImageOps.invert`: 255 - x."""
  return 255 - to_uint8(frames)


@_plain
def posterize(frames, bits) -> tf.Tensor:
  """`ImageOps.posterize`: keeps the top `bits` (0..8) bits of every value."""
  shift = 8 - tf.cast(bits, tf.int32)
  x = _int(frames)
  return _u8(tf.bitwise.left_shift(tf.bitwise.right_shift(x, shift), shift))


@_plain
def solarize(frames, threshold) -> tf.Tensor:
  """`ImageOps.solarize`: values >= `threshold` become 255 - x (threshold 256: identity)."""
  x = _int(frames)
  return _u8(tf.where(x >= tf.cast(threshold, tf.int32), 255 - x, x))


@_plain
def solarize_add(frames, add, threshold=128) -> tf.Tensor:
  """timm `solarize_add`: values < `threshold` become min(x + add, 255)."""
  x = _int(frames)
  added = tf.minimum(x + tf.cast(add, tf.int32), 255)
  return _u8(tf.where(x < tf.cast(threshold, tf.int32), added, x))


@_plain
def autocontrast(frames) -> tf.Tensor:
  """`ImageOps.autocontrast` per frame and channel: lut int(x * 255/(hi-lo) - lo * 255/(hi-lo)).

  Computed in float64 in PIL's order, so the truncation matches; a channel with hi == lo is
  left unchanged.
  """
  x = _int(frames)
  lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
  hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
  scale = 255.0 / tf.cast(tf.maximum(hi - lo, 1), tf.float64)
  offset = -tf.cast(lo, tf.float64) * scale
  mapped = tf.clip_by_value(tf.floor(tf.cast(x, tf.float64) * scale + offset), 0.0, 255.0)
  return _u8(tf.where(hi > lo, tf.cast(mapped, tf.int32), x))


@_plain
def equalize(frames) -> tf.Tensor:
  """`ImageOps.equalize` per frame and channel.

  With h the 256-bin histogram, step = (pixels - count of the last non-empty bin) // 255 and
  lut[i] = (step // 2 + sum(h[:i])) // step; the channel is unchanged when step == 0.
  """
  x = _int(frames)
  shape = tf.shape(x)
  t, pixels = shape[0], shape[1] * shape[2]
  # One histogram per (frame, channel): offset every value by 256 * (3 * frame + channel).
  offsets = 256 * tf.reshape(tf.range(t * 3), [t, 1, 1, 3])
  hist = tf.math.bincount(
    tf.reshape(x + offsets, [-1]), minlength=t * 3 * 256, maxlength=t * 3 * 256
  )
  hist = tf.reshape(hist, [t * 3, 256])
  last = 255 - tf.argmax(tf.cast(tf.reverse(hist, [1]) > 0, tf.int32), axis=1, output_type=tf.int32)
  step = (pixels - tf.gather(hist, last, batch_dims=1)) // 255  # [t * 3]
  safe = tf.maximum(step, 1)[:, None]
  before = tf.cumsum(hist, axis=1, exclusive=True)
  lut = tf.minimum((safe // 2 + before) // safe, 255)
  lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None])
  return _u8(tf.gather(tf.reshape(lut, [-1]), x + offsets))


def _blend(degenerate, image, factor) -> tf.Tensor:
  """`Image.blend(degenerate, image, factor)` on uint8: float32 d + f (x - d), clipped and
  truncated, as libImaging does."""
  d = tf.cast(degenerate, tf.float32)
  v = d + tf.cast(factor, tf.float32) * (tf.cast(image, tf.float32) - d)
  return _u8(tf.floor(tf.clip_by_value(v, 0.0, 255.0)))


@_plain
def grayscale(frames) -> tf.Tensor:
  """int32 [T, H, W, 1]: PIL's RGB -> L, (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
  x = _int(frames)
  weighted = x * tf.constant([19595, 38470, 7471], tf.int32)
  return tf.bitwise.right_shift(tf.reduce_sum(weighted, -1, keepdims=True) + 32768, 16)


@_plain
def color(frames, factor) -> tf.Tensor:
  """`ImageEnhance.Color`: blend of the grayscale (L) image and the image."""
  return _blend(grayscale(frames), to_uint8(frames), factor)


@_plain
def contrast(frames, factor) -> tf.Tensor:
  """`ImageEnhance.Contrast`: blend of the frame's mean grey int(mean(L) + 0.5) and the image."""
  gray = tf.cast(grayscale(frames), tf.float64)
  mean = tf.floor(tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True) + 0.5)
  return _blend(mean, to_uint8(frames), factor)


@_plain
def brightness(frames, factor) -> tf.Tensor:
  """`ImageEnhance.Brightness`: blend of black and the image."""
  return _blend(tf.zeros([], tf.float32), to_uint8(frames), factor)


@_plain
def smooth(frames) -> tf.Tensor:
  """`ImageFilter.SMOOTH` ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, float32, +0.5 truncated);
  the 1-pixel border keeps the original values, as in PIL."""
  x = to_uint8(frames)
  f = tf.cast(x, tf.float32)
  k = [tf.constant(1.0, tf.float32) / 13.0, tf.constant(5.0, tf.float32) / 13.0]
  weights = ((k[0], k[0], k[0]), (k[0], k[1], k[0]), (k[0], k[0], k[0]))
  h, w = tf.shape(f)[1], tf.shape(f)[2]
  total = tf.constant(0.5, tf.float32)
  for dy in (2, 1, 0):  # PIL accumulates row y+1, then y, then y-1, each row left to right
    row = [f[:, dy : h - 2 + dy, dx : w - 2 + dx] * weights[dy][dx] for dx in range(3)]
    total = total + ((row[0] + row[1]) + row[2])
  inner = _u8(tf.floor(tf.clip_by_value(total, 0.0, 255.0)))
  inner = tf.pad(inner, [[0, 0], [1, 1], [1, 1], [0, 0]])
  border = tf.pad(tf.ones([h - 2, w - 2], tf.bool), [[1, 1], [1, 1]])
  return tf.where(border[None, :, :, None], inner, x)


@_plain
def sharpness(frames, factor) -> tf.Tensor:
  """`ImageEnhance.Sharpness`: blend of the SMOOTH-filtered image and the image."""
  return _blend(smooth(frames), to_uint8(frames), factor)


# ------------------------------------------------------------------------- geometric ops (PIL)


@_plain
def affine(frames, matrix, fill: Sequence[int] = FILL) -> tf.Tensor:
  """PIL `Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=fill)` on every frame.

  `matrix` = (a, b, c, d, e, f) maps output to input coordinates, pixel centres at +0.5:
  input = (a x + b y + c, d x + e y + f). As PIL (libImaging `bilinear_filter32RGB`, float64):
  an output pixel whose source point falls outside the image gets `fill`; the others
  interpolate between edge-clamped neighbours and are truncated to uint8.
  """
  x = to_uint8(frames)
  a, b, c, d, e, f = tf.unstack(_f64(matrix))
  shape = tf.shape(x)
  h, w = shape[1], shape[2]
  hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
  xs = tf.cast(tf.range(w), tf.float64)[None, :] + 0.5
  ys = tf.cast(tf.range(h), tf.float64)[:, None] + 0.5
  x_in, y_in = a * xs + b * ys + c, d * xs + e * ys + f  # [H, W]
  inside = (x_in >= 0) & (x_in < wf) & (y_in >= 0) & (y_in < hf)
  x_in, y_in = x_in - 0.5, y_in - 0.5
  x0 = tf.floor(tf.clip_by_value(x_in, -1.0, wf))
  y0 = tf.floor(tf.clip_by_value(y_in, -1.0, hf))
  dx = tf.reshape(x_in - x0, [1, -1, 1])
  dy = tf.reshape(y_in - y0, [1, -1, 1])
  xi, yi = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
  cols = [tf.clip_by_value(xi + k, 0, w - 1) for k in (0, 1)]
  rows = [tf.clip_by_value(yi + k, 0, h - 1) for k in (0, 1)]
  flat = tf.reshape(x, [shape[0], h * w, 3])

  def pixel(row, col):
    return tf.cast(tf.gather(flat, tf.reshape(row * w + col, [-1]), axis=1), tf.float64)

  top = [pixel(rows[0], col) for col in cols]
  bottom = [pixel(rows[1], col) for col in cols]
  v1 = top[0] + (top[1] - top[0]) * dx
  v2 = bottom[0] + (bottom[1] - bottom[0]) * dx
  values = tf.reshape(tf.floor(v1 + (v2 - v1) * dy), shape)
  fill_values = tf.constant([float(v) for v in fill], tf.float64)
  return _u8(tf.where(inside[None, :, :, None], values, fill_values))


def _round15(v):
  """Python's round(v, 15), as PIL rounds the rotation matrix (float64, to the nearest ulp)."""
  return tf.round(v * 1e15) / 1e15


@_plain
def rotation_matrix(height, width, degrees) -> tf.Tensor:
  """float64 [6]: the affine matrix PIL's `Image.rotate(degrees)` uses (about (W/2, H/2))."""
  cx, cy = _f64(width) / 2.0, _f64(height) / 2.0
  angle = -(tf.math.floormod(_f64(degrees), 360.0) * (math.pi / 180.0))
  cos, sin = _round15(tf.cos(angle)), _round15(tf.sin(angle))
  # Inverse rotation [[cos, sin], [-sin, cos]] about the centre, in PIL's order of operations.
  c = (cos * -cx + sin * -cy + 0.0) + cx
  f = (-sin * -cx + cos * -cy + 0.0) + cy
  return tf.stack([cos, sin, c, -sin, cos, f])


def _shear_x_matrix(factor):
  return tf.stack([1.0, _f64(factor), 0.0, 0.0, 1.0, 0.0])


def _shear_y_matrix(factor):
  return tf.stack([1.0, 0.0, 0.0, _f64(factor), 1.0, 0.0])


def _translate_x_matrix(pixels):
  return tf.stack([1.0, 0.0, _f64(pixels), 0.0, 1.0, 0.0])


def _translate_y_matrix(pixels):
  return tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, _f64(pixels)])


@_plain
def rotate(frames, degrees, fill: Sequence[int] = FILL) -> tf.Tensor:
  """PIL `Image.rotate(degrees, BILINEAR, fillcolor=fill)`: counter-clockwise about (W/2, H/2).

  PIL's special cases (exact transposes at 0, 90, 180, 270 degrees) are not taken; the bilinear
  result at those angles is the same up to rounding.
  """
  shape = tf.shape(frames)
  return affine(frames, rotation_matrix(shape[1], shape[2], degrees), fill)


@_plain
def shear_x(frames, factor, fill: Sequence[int] = FILL) -> tf.Tensor:
  """timm `shear_x`: PIL affine (1, factor, 0, 0, 1, 0)."""
  return affine(frames, _shear_x_matrix(factor), fill)


@_plain
def shear_y(frames, factor, fill: Sequence[int] = FILL) -> tf.Tensor:
  """timm `shear_y`: PIL affine (1, 0, 0, factor, 1, 0)."""
  return affine(frames, _shear_y_matrix(factor), fill)


@_plain
def translate_x(frames, pixels, fill: Sequence[int] = FILL) -> tf.Tensor:
  """timm `translate_x_abs`: PIL affine (1, 0, pixels, 0, 1, 0) (content moves left by pixels)."""
  return affine(frames, _translate_x_matrix(pixels), fill)


@_plain
def translate_y(frames, pixels, fill: Sequence[int] = FILL) -> tf.Tensor:
  """timm `translate_y_abs`: PIL affine (1, 0, 0, 0, 1, pixels) (content moves up by pixels)."""
  return affine(frames, _translate_y_matrix(pixels), fill)


# ------------------------------------------------------------------------------ RandAugment


@_plain
def rand_augment_params(
  seed,
  *,
  magnitude: float = 7.0,
  num_layers: int = 4,
  magnitude_std: float = 0.5,
  prob: float = 0.5,
) -> dict[str, tf.Tensor]:
  """One clip's RandAugment draw, as timm's `RandAugment` / `AugmentOp` make it.

  Returns [num_layers] tensors: `op` (int32 index into OP_NAMES, uniform with replacement),
  `apply` (bool, probability `prob`), `magnitude` (float32, N(magnitude, magnitude_std) clipped
  to [0, MAX_LEVEL]) and `sign` (float32 ±1, the level functions' random negation).
  """
  if int(num_layers) != num_layers or num_layers < 0:
    raise ValueError(f"num_layers must be an integer >= 0, got {num_layers}")
  if not 0 <= prob <= 1:
    raise ValueError(f"prob must be in [0, 1], got {prob}")
  if magnitude_std < 0:
    raise ValueError(f"magnitude_std must be >= 0, got {magnitude_std}")
  s_op, s_apply, s_mag, s_sign = tf.unstack(_split(seed, 4))
  n = int(num_layers)
  op = tf.random.stateless_uniform([n], s_op, 0, len(OP_NAMES), tf.int32)
  apply = tf.random.stateless_uniform([n], s_apply) < prob
  noise = tf.random.stateless_normal([n], s_mag) * magnitude_std if magnitude_std > 0 else 0.0
  mag = tf.clip_by_value(magnitude + noise + tf.zeros([n]), 0.0, MAX_LEVEL)
  sign = tf.where(tf.random.stateless_uniform([n], s_sign) < 0.5, 1.0, -1.0)
  return {"op": op, "apply": apply, "magnitude": mag, "sign": sign}


_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_PIXEL = tuple(name for name in OP_NAMES if name not in _GEOMETRIC)
# OP_NAMES index -> switch branch: the pixel ops, then one affine branch for the geometric ops
# (they differ only by their matrix), then the identity (op not applied).
_BRANCH = tuple(_PIXEL.index(n) if n in _PIXEL else len(_PIXEL) for n in OP_NAMES)
_IDENTITY = len(_PIXEL) + 1


def _layer(x, op, apply, magnitude, sign, fill) -> tf.Tensor:
  """One RandAugment layer on uint8 `x`: op index `op` at `magnitude` with the timm level
  functions (level = magnitude / MAX_LEVEL), or the identity when not `apply`."""
  level = tf.cast(magnitude, tf.float64) / MAX_LEVEL
  sign = tf.cast(sign, tf.float64)
  enhance = 1.0 + sign * (level * 0.9)
  shape = tf.shape(x)
  height, width = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
  matrices = {
    "Rotate": lambda: rotation_matrix(height, width, level * 30.0 * sign),
    "ShearX": lambda: _shear_x_matrix(level * 0.3 * sign),
    "ShearY": lambda: _shear_y_matrix(level * 0.3 * sign),
    "TranslateXRel": lambda: _translate_x_matrix(level * 0.45 * sign * width),
    "TranslateYRel": lambda: _translate_y_matrix(level * 0.45 * sign * height),
  }
  pixel_ops = {
    "AutoContrast": lambda: autocontrast(x),
    "Equalize": lambda: equalize(x),
    "Invert": lambda: invert(x),
    "PosterizeIncreasing": lambda: posterize(x, 4 - tf.cast(tf.floor(level * 4.0), tf.int32)),
    "SolarizeIncreasing": lambda: solarize(x, 256 - tf.cast(tf.floor(level * 256.0), tf.int32)),
    "SolarizeAdd": lambda: solarize_add(x, tf.cast(tf.floor(level * 110.0), tf.int32)),
    "ColorIncreasing": lambda: color(x, enhance),
    "ContrastIncreasing": lambda: contrast(x, enhance),
    "BrightnessIncreasing": lambda: brightness(x, enhance),
    "SharpnessIncreasing": lambda: sharpness(x, enhance),
  }

  def geometric():
    which = tf.gather([_GEOMETRIC.index(n) if n in _GEOMETRIC else 0 for n in OP_NAMES], op)
    return affine(x, tf.switch_case(which, [matrices[n] for n in _GEOMETRIC]), fill)

  branches = [pixel_ops[n] for n in _PIXEL] + [geometric, lambda: tf.identity(x)]
  index = tf.where(apply, tf.gather(_BRANCH, op), _IDENTITY)
  return tf.switch_case(index, branches)


@_plain
def apply_rand_augment(
  frames, params: dict[str, tf.Tensor], fill: Sequence[int] = FILL
) -> tf.Tensor:
  """Applies the layers drawn by `rand_augment_params` in order, the same to every frame.

  frames: uint8 or float [T, H, W, 3] in [0, 255] (float is rounded to uint8 first, as the
  reference works on uint8 PIL images); returns float32 [T, H, W, 3] with integer values.
  The layers run in a `tf.while_loop`, so the graph holds each op once.
  """
  x = to_uint8(frames)
  static_shape = x.shape
  op, apply = tf.convert_to_tensor(params["op"]), tf.convert_to_tensor(params["apply"])
  magnitude, sign = params["magnitude"], params["sign"]

  def body(i, x):
    return i + 1, tf.ensure_shape(
      _layer(x, op[i], apply[i], magnitude[i], sign[i], fill), static_shape
    )

  _, x = tf.while_loop(lambda i, _: i < tf.size(op), body, (tf.constant(0), x))
  return tf.ensure_shape(tf.cast(x, tf.float32), static_shape)


@_plain
def rand_augment(
  frames,
  seed,
  *,
  magnitude: float = 7.0,
  num_layers: int = 4,
  magnitude_std: float = 0.5,
  prob: float = 0.5,
  fill: Sequence[int] = FILL,
) -> tf.Tensor:
  """VideoMAE's RandAugment `rand-m7-n4-mstd0.5-inc1` on one clip, one draw for all frames.

  frames: uint8 or float [T, H, W, 3] in [0, 255]; returns float32 [T, H, W, 3] in [0, 255].
  `num_layers` ops of OP_NAMES chosen uniformly with replacement, each applied with probability
  `prob` at magnitude N(magnitude, magnitude_std) clipped to [0, 10], mapped as timm's level
  functions: rotate ±30°·m/10, shear ±0.3·m/10, translate ±0.45·m/10 of the side, enhance
  1 ± 0.9·m/10, posterize 4 - int(4·m/10) bits, solarize threshold 256 - int(256·m/10),
  solarize-add int(110·m/10) below 128. Ops match PIL on uint8, with per-frame statistics
  (AutoContrast, Equalize, Contrast) as PIL computes them per image; geometric ops fill with
  `fill` (timm's default grey, which VideoMAE uses) and are PIL BILINEAR, where VideoMAE runs
  `--train_interpolation bicubic`. Unlike Pillow >= 10, which rejects it, posterize to 0 bits
  (magnitude 10) gives black, as older Pillow did.
  """
  params = rand_augment_params(
    seed, magnitude=magnitude, num_layers=num_layers, magnitude_std=magnitude_std, prob=prob
  )
  return apply_rand_augment(frames, params, fill)


# ---------------------------------------------------------------------------- random erasing


@_plain
def random_erasing(
  video,
  seed,
  *,
  prob: float = 0.25,
  area=(0.02, 1 / 3),
  log_ratio=(math.log(0.3), math.log(1 / 0.3)),
  attempts: int | None = None,
  same_for_all_frames: bool = True,
) -> tf.Tensor:
  """VideoMAE's `RandomErasing(reprob, mode="pixel", max_count=1)` on a normalised clip.

  video: float [T, H, W, C]; returns the same dtype and shape. With probability `prob` one box
  is erased: area fraction ~ U(area), aspect ~ exp(U(log_ratio)), h = round(sqrt(A·aspect)),
  w = round(sqrt(A/aspect)) (half to even, as Python's round), accepted if h < H and w < W, the
  first of `attempts` candidates that fits is used with a uniform offset, none erased if none
  fits. The box gets standard-normal values drawn per pixel, channel and frame.
  `same_for_all_frames=True` (VideoMAE's default `cube=True`): one decision and one box for the
  whole clip, 100 attempts by default. False (timm's per-image erasing of a batch): every frame
  draws its own decision and box, 10 attempts by default.
  """
  video = tf.convert_to_tensor(video)
  shape = tf.shape(video)
  boxes = random_erasing_boxes(
    shape[:3],
    seed,
    prob=prob,
    area=area,
    log_ratio=log_ratio,
    attempts=attempts,
    same_for_all_frames=same_for_all_frames,
  )
  s_noise = _split(seed, 6)[5]
  top, left, h, w = tf.unstack(boxes, axis=1)
  ys = tf.range(shape[1])[None, :, None]
  xs = tf.range(shape[2])[None, None, :]
  box = (
    (ys >= top[:, None, None])
    & (ys < (top + h)[:, None, None])
    & (xs >= left[:, None, None])
    & (xs < (left + w)[:, None, None])
  )[..., None]  # [n, H, W, 1]

  def _erase():
    noise = tf.random.stateless_normal(shape, s_noise, dtype=video.dtype)
    return tf.where(box, noise, video)

  return tf.cond(tf.reduce_any(h > 0), _erase, lambda: tf.identity(video))


def random_erasing_boxes(
  shape,
  seed,
  *,
  prob: float = 0.25,
  area=(0.02, 1 / 3),
  log_ratio=(math.log(0.3), math.log(1 / 0.3)),
  attempts: int | None = None,
  same_for_all_frames: bool = True,
) -> tf.Tensor:
  """The boxes `random_erasing` draws for a clip of `shape` (T, H, W) from `seed`: int32 [n, 4]
  (top, left, height, width; 0 × 0 where nothing is erased), n = 1 with `same_for_all_frames`,
  else T. The same draws as `random_erasing`, so the erasing can be applied elsewhere (the
  accelerator: `mgvm.data.device_ops.erase`)."""
  if not 0 <= prob <= 1:
    raise ValueError(f"prob must be in [0, 1], got {prob}")
  if not 0 < area[0] <= area[1]:
    raise ValueError(f"area must be 0 < min <= max, got {area}")
  if not log_ratio[0] <= log_ratio[1]:
    raise ValueError(f"log_ratio must be min <= max, got {log_ratio}")
  if attempts is None:
    attempts = 100 if same_for_all_frames else 10
  if int(attempts) != attempts or attempts < 1:
    raise ValueError(f"attempts must be an integer >= 1, got {attempts}")
  t, h_img, w_img = shape[0], shape[1], shape[2]
  n = 1 if same_for_all_frames else t
  s_do, s_area, s_ratio, s_y, s_x, _ = tf.unstack(_split(seed, 6))
  do = tf.random.stateless_uniform([n], s_do, dtype=tf.float64) < prob
  hf, wf = tf.cast(h_img, tf.float64), tf.cast(w_img, tf.float64)
  target = (
    hf * wf * tf.random.stateless_uniform([n, attempts], s_area, area[0], area[1], tf.float64)
  )
  aspect = tf.exp(
    tf.random.stateless_uniform([n, attempts], s_ratio, log_ratio[0], log_ratio[1], tf.float64)
  )
  hs = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
  ws = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
  fits = (ws < w_img) & (hs < h_img)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  erase = do & tf.reduce_any(fits, axis=1)
  h = tf.gather(hs, first, batch_dims=1)
  w = tf.gather(ws, first, batch_dims=1)
  # random.randint(0, side - box): uniform over side - box + 1 offsets.
  top = tf.cast(
    tf.floor(
      tf.random.stateless_uniform([n], s_y, dtype=tf.float64) * tf.cast(h_img - h + 1, tf.float64)
    ),
    tf.int32,
  )
  left = tf.cast(
    tf.floor(
      tf.random.stateless_uniform([n], s_x, dtype=tf.float64) * tf.cast(w_img - w + 1, tf.float64)
    ),
    tf.int32,
  )
  zero = tf.zeros_like(h)
  return tf.stack([top, left, tf.where(erase, h, zero), tf.where(erase, w, zero)], axis=1)
