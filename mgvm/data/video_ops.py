"""TensorFlow ops on one clip `[T, H, W, 3]` (docs/algorithms.md §0.4, §1.5–1.7).

Every random op takes an explicit stateless `seed` (a [2] int tensor) and draws one crop / flip
for the whole clip, so all frames get the same geometry and eager, graph and tf.data runs agree
exactly. Resizing is bilinear (half-pixel centres, no antialiasing); crops and resizes return
float32 in [0, 255]; `normalize` maps to normalised float32 (ImageNet statistics by default).
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from mgvm.data.device_ops import MEAN, STD, normalization_stats  # noqa: F401 (MEAN, STD re-exported)

MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)

# Fixed crop positions of VideoMAE's GroupMultiScaleCrop, in units of (x step, y step) where
# step = (image side - crop side) // 4: corners and centre, then (more_fix_crop) edge midpoints
# and quarter points.
FIX_OFFSETS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))
MORE_FIX_OFFSETS = ((0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def _split(seed, num: int) -> tf.Tensor:
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def _randint(seed, maxval) -> tf.Tensor:
  """int32 scalar uniform in [0, maxval)."""
  return tf.random.stateless_uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)


def _check_size(size):
  if int(size) != size or size < 1:
    raise ValueError(f"size must be an integer >= 1, got {size}")


def decode_frames(jpegs: tf.Tensor, indices: tf.Tensor, box=None) -> tf.Tensor:
  """uint8 [*indices.shape, H, W, 3]: decodes only the frames `indices` picks from `jpegs` [N].

  Repeated indices (wrap-around, upsampling) are decoded once. With `box = (y, x, h, w)` only
  that window of each frame is decoded (`decode_and_crop_jpeg`: the same pixels as decoding the
  whole frame and cropping, for less work) and the frames are [h, w].
  """
  indices = tf.convert_to_tensor(indices)
  unique, position = tf.unique(tf.reshape(indices, [-1]))
  if box is None:
    decode = lambda b: tf.io.decode_jpeg(b, channels=3)  # noqa: E731
  else:
    window = tf.stack([tf.cast(v, tf.int32) for v in box])
    decode = lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3)  # noqa: E731
  decoded = tf.map_fn(
    decode, tf.gather(jpegs, unique), fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)
  )
  frames = tf.gather(decoded, position)
  return tf.reshape(frames, tf.concat([tf.shape(indices), tf.shape(decoded)[1:]], 0))


def jpeg_size(jpegs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(height, width) int32 of the first JPEG of `jpegs` [N] (read from its header: no decoding).
  A video's frames share one size."""
  shape = tf.image.extract_jpeg_shape(jpegs[0])
  return shape[0], shape[1]


def size_hw(size) -> tuple[int, int]:
  """(height, width) of an int (square) or a (height, width) pair; each an integer >= 1."""
  height, width = (size, size) if isinstance(size, (int, float)) else tuple(size)
  for v in (height, width):
    _check_size(v)
  return int(height), int(width)


def resize(frames: tf.Tensor, size) -> tf.Tensor:
  """float32 [T, H, W, 3]: every frame resized bilinearly (as `crop_and_resize`) to `size` (an
  int for S × S, or (H, W)); the aspect is not kept."""
  height, width = size_hw(size)
  out = tf.image.resize(frames, [height, width], method="bilinear")
  return tf.ensure_shape(tf.cast(out, tf.float32), [frames.shape[0], height, width, 3])


def fit_size(height, width, size) -> tf.Tensor:
  """int32 [2]: the (h, w) a `height` × `width` frame is resized to by `resize_keep_aspect`.

  Scale s = min(H / height, W / width) for the canvas `size` = (H, W) (an int: S × S), sides
  `floor(side · s + 0.5)` (at least 1, at most the canvas). For a frame of the canvas's
  orientation (landscape in a landscape canvas) this is detectron2's ResizeShortestEdge with
  short side min(H, W) and max size max(H, W): the short side becomes H unless the long side
  would pass W, then the long side becomes W.
  """
  canvas_h, canvas_w = size_hw(size)
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  scale = tf.minimum(canvas_h / h, canvas_w / w)
  new_h = tf.clip_by_value(tf.floor(h * scale + 0.5), 1.0, float(canvas_h))
  new_w = tf.clip_by_value(tf.floor(w * scale + 0.5), 1.0, float(canvas_w))
  return tf.cast(tf.stack([new_h, new_w]), tf.int32)


def resize_keep_aspect(frames: tf.Tensor, size) -> tuple[tf.Tensor, tf.Tensor]:
  """(float32 [T, H, W, 3], int32 [2] content (h, w)): every frame resized bilinearly to
  `fit_size` (aspect kept) and zero-padded at the bottom and right to the canvas `size`."""
  canvas_h, canvas_w = size_hw(size)
  height, width = _hw(frames)
  content = fit_size(height, width, (canvas_h, canvas_w))
  out = tf.cast(tf.image.resize(frames, content, method="bilinear"), tf.float32)
  out = tf.pad(out, [[0, 0], [0, canvas_h - content[0]], [0, canvas_w - content[1]], [0, 0]])
  return tf.ensure_shape(out, [frames.shape[0], canvas_h, canvas_w, 3]), content


def to_uint8(frames: tf.Tensor) -> tf.Tensor:
  """float [0, 255] → uint8, rounded half to even (at most 0.5 from the float value)."""
  return tf.cast(tf.round(tf.clip_by_value(frames, 0.0, 255.0)), tf.uint8)


def crop_and_resize(frames: tf.Tensor, box, size: int) -> tf.Tensor:
  """float32 [T, size, size, 3]: crops `box = (y, x, h, w)` from every frame, resizes bilinearly."""
  y, x, h, w = box
  return resize(frames[:, y : y + h, x : x + w, :], size)


def _hw(frames):
  shape = tf.shape(frames)
  return shape[1], shape[2]


def multi_scale_crop_box(
  height,
  width,
  size: int,
  seed,
  scales: Sequence[float] = MULTI_SCALES,
  max_distort: int = 1,
  more_fix_crop: bool = True,
):
  """(y, x, h, w) int32 scalars chosen as VideoMAE's `GroupMultiScaleCrop` does.

  Candidate sides `int(min(H, W) * scale)`, each replaced by `size` when within 3 px of it;
  (w, h) drawn uniformly from the pairs of candidates whose scale indices differ by at most
  `max_distort`; offset drawn uniformly from the 5 (or 13 with `more_fix_crop`) fixed positions.
  Unlike the reference, a side snapped up past the image is clipped to the image.
  """
  _check_size(size)
  if not scales:
    raise ValueError("scales must be non-empty")
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  base = tf.cast(tf.minimum(height, width), tf.float64)
  sides = tf.cast(tf.floor(base * tf.constant(scales, tf.float64)), tf.int32)
  sides = tf.where(tf.abs(sides - size) < 3, size, sides)
  pairs = [
    (i, j) for i in range(len(scales)) for j in range(len(scales)) if abs(i - j) <= max_distort
  ]  # (h index, w index), the reference's order
  offsets = FIX_OFFSETS + (MORE_FIX_OFFSETS if more_fix_crop else ())
  seed_pair, seed_offset = tf.unstack(_split(seed, 2))
  k = _randint(seed_pair, len(pairs))
  h = tf.minimum(tf.gather(sides, tf.gather([p[0] for p in pairs], k)), height)
  w = tf.minimum(tf.gather(sides, tf.gather([p[1] for p in pairs], k)), width)
  o = _randint(seed_offset, len(offsets))
  x = tf.gather([a for a, _ in offsets], o) * ((width - w) // 4)
  y = tf.gather([b for _, b in offsets], o) * ((height - h) // 4)
  return y, x, h, w


def multi_scale_crop(
  frames: tf.Tensor,
  size: int,
  seed,
  scales: Sequence[float] = MULTI_SCALES,
  max_distort: int = 1,
  more_fix_crop: bool = True,
) -> tf.Tensor:
  """Pre-training crop (VideoMAE `GroupMultiScaleCrop`): float32 [T, size, size, 3]."""
  height, width = _hw(frames)
  box = multi_scale_crop_box(height, width, size, seed, scales, max_distort, more_fix_crop)
  return crop_and_resize(frames, box, size)


def random_resized_crop_box(
  height, width, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10
):
  """(y, x, h, w) int32 scalars with torchvision `RandomResizedCrop` semantics.

  `attempts` candidates (area fraction ~ U(scale), log aspect ~ U(log ratio),
  w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect))) are drawn at once; the first
  that fits is used with a uniform offset. If none fits: centre crop of the whole image, its
  aspect clamped to `ratio`.
  """
  if not 0 < scale[0] <= scale[1]:
    raise ValueError(f"scale must be 0 < min <= max, got {scale}")
  if not 0 < ratio[0] <= ratio[1]:
    raise ValueError(f"ratio must be 0 < min <= max, got {ratio}")
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  s_area, s_ratio, s_y, s_x = tf.unstack(_split(seed, 4))
  area = hf * wf * tf.random.stateless_uniform([attempts], s_area, scale[0], scale[1], tf.float64)
  aspect = tf.exp(
    tf.random.stateless_uniform(
      [attempts], s_ratio, math.log(ratio[0]), math.log(ratio[1]), tf.float64
    )
  )
  ws = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  hs = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  in_ratio = wf / hf
  fb_w = tf.where(in_ratio > ratio[1], tf.cast(tf.round(hf * ratio[1]), tf.int32), width)
  fb_h = tf.where(in_ratio < ratio[0], tf.cast(tf.round(wf / ratio[0]), tf.int32), height)
  found = tf.reduce_any(fits)
  w = tf.where(found, ws[first], fb_w)
  h = tf.where(found, hs[first], fb_h)
  y = tf.where(found, _randint(s_y, height - h + 1), (height - h) // 2)
  x = tf.where(found, _randint(s_x, width - w + 1), (width - w) // 2)
  return y, x, h, w


def random_resized_crop(
  frames: tf.Tensor, size: int, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tf.Tensor:
  """Fine-tuning crop: one `random_resized_crop_box` for all frames, float32 [T, size, size, 3]."""
  _check_size(size)
  height, width = _hw(frames)
  return crop_and_resize(frames, random_resized_crop_box(height, width, seed, scale, ratio), size)


def random_flip(frames: tf.Tensor, seed, prob: float = 0.5) -> tf.Tensor:
  """Flips every frame of the clip horizontally with probability `prob` (one draw per clip)."""
  if not 0 <= prob <= 1:
    raise ValueError(f"prob must be in [0, 1], got {prob}")
  return tf.cond(
    flip_decision(seed, prob), lambda: tf.reverse(frames, [2]), lambda: tf.identity(frames)
  )


def flip_decision(seed, prob: float = 0.5) -> tf.Tensor:
  """The bool `random_flip` draws from `seed` (to flip later, e.g. on the accelerator)."""
  return tf.random.stateless_uniform([], tf.cast(seed, tf.int64)) < prob


def resize_short_side(frames: tf.Tensor, size: int) -> tf.Tensor:
  """float32: bilinear resize so the short side is `size`; long = floor(size * long / short)."""
  _check_size(size)
  height, width = _hw(frames)
  new_h = tf.where(height <= width, size, (size * height) // width)
  new_w = tf.where(height <= width, (size * width) // height, size)
  return tf.cast(tf.image.resize(frames, tf.stack([new_h, new_w]), method="bilinear"), tf.float32)


def resize_center_crop(frames: tf.Tensor, size: int) -> tf.Tensor:
  """Evaluation view: short side to `size`, then the centre `size`×size crop (offset floor)."""
  resized = resize_short_side(frames, size)
  height, width = _hw(resized)
  y, x = (height - size) // 2, (width - size) // 2
  out = resized[:, y : y + size, x : x + size, :]
  return tf.ensure_shape(out, [frames.shape[0], size, size, 3])


def spatial_crops(frames: tf.Tensor, size: int, num_crops: int = 3) -> tf.Tensor:
  """float32 [num_crops, T, size, size, 3]: VideoMAE's multi-crop test views.

  Short side to `size`, then crops along the long side (along H when H >= W) at
  `int(k * (long - size) / (num_crops - 1))`: start / centre / end for 3. One crop is the
  centre crop (`resize_center_crop`).
  """
  if int(num_crops) != num_crops or num_crops < 1:
    raise ValueError(f"num_crops must be an integer >= 1, got {num_crops}")
  if num_crops == 1:
    return resize_center_crop(frames, size)[None]
  resized = resize_short_side(frames, size)
  height, width = _hw(resized)
  along_h = height >= width
  step = tf.cast(tf.maximum(height, width) - size, tf.float64) / float(num_crops - 1)
  views = []
  for k in range(num_crops):
    start = tf.cast(tf.floor(float(k) * step), tf.int32)
    y, x = tf.where(along_h, start, 0), tf.where(along_h, 0, start)
    views.append(resized[:, y : y + size, x : x + size, :])
  return tf.ensure_shape(tf.stack(views), [num_crops, frames.shape[0], size, size, 3])


def normalize(frames: tf.Tensor, normalization: str = "imagenet") -> tf.Tensor:
  """float32 `(frames / 255 - mean) / std` per channel, with the statistics of `normalization`
  (`mgvm.data.device_ops.NORMALIZATIONS`: "imagenet" or "kinetics")."""
  mean, std = normalization_stats(normalization)
  x = tf.cast(frames, tf.float32) / 255.0
  return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


# -------------------------------------------------------------------- the codec motion field
# A stored motion field (`mgvm.data.format`: per stored frame, (dx, dy) per block of
# `stored_block` px, from the previous stored frame) made to follow clips: summed over each
# step of a clip, cropped with the frames' box and averaged onto the model's token grid. Every
# function takes a leading axis of clips (views). Plain TF (no tensor-dependent Python control
# flow), so tf.data skips autograph's slow conversion of them.
_plain = tf.autograph.experimental.do_not_convert


@_plain
def motion_steps(vectors, valid, positions) -> tuple[tf.Tensor, tf.Tensor]:
  """(float32 [V, T, gh, gw, 2] motion, float32 [V, T, gh, gw] valid share) from clip frame k − 1
  to k of each of V clips.

  `vectors` [n, gh, gw, 2] / `valid` [n, gh, gw]: the stored per-frame field and its flags;
  `positions` int [V, T]: each clip's source frames *unwrapped* (non-decreasing; frame
  `positions % n`, `sampling.clip_positions`). Entry k sums the stored fields of the frames
  (p_{k−1}, p_k] (the motion from clip frame k − 1 to k, summed in place: it approximates
  chaining them along the motion), from float64 prefix sums over the frames the clips span, and
  its valid share is the mean of their flags. Entry 0 is 0 with share 0 (no previous frame); a repeated frame is 0 with
  share 1 (no motion); a step across the video's end (a wrap-around, i.e. a cut) is 0 with
  share 0.
  """
  p = tf.cast(positions, tf.int64)
  a, b = p[:, :-1], p[:, 1:]
  n = tf.cast(tf.shape(vectors)[0], tf.int64)
  check = tf.debugging.assert_non_negative(b - a, message="positions must not decrease")
  with tf.control_dependencies([check]):
    first = tf.reduce_min(p)
  # Prefix sums over the frames the clips step through (only those): frame `first + i` at i.
  source = tf.math.floormod(tf.range(first, tf.reduce_max(p) + 1), n)
  field = tf.concat(
    [
      tf.cast(tf.gather(vectors, source), tf.float64),
      tf.cast(tf.gather(valid, source), tf.float64)[..., None],
    ],
    -1,
  )
  total = tf.cumsum(field, axis=0)
  span = tf.gather(total, b - first) - tf.gather(total, a - first)
  steps = tf.cast(b - a, tf.float64)[:, :, None, None]
  cut = (tf.math.floordiv(a, n) != tf.math.floordiv(b, n))[:, :, None, None]
  share = tf.where(steps > 0, span[..., 2] / tf.maximum(steps, 1.0), tf.ones_like(steps))
  share = tf.where(cut, tf.zeros_like(share), share)
  moved = tf.where(cut[..., None], tf.zeros_like(span[..., :2]), span[..., :2])
  zero = lambda x: tf.zeros_like(x[:, :1])  # noqa: E731
  return (
    tf.cast(tf.concat([zero(moved), moved], 1), tf.float32),
    tf.cast(tf.concat([zero(share), share], 1), tf.float32),
  )


def _cell_weights(start, length, cells: int, block, blocks) -> tf.Tensor:
  """float64 [V, cells, blocks]: the share of output cell r (`cells` equal cells over [start,
  start + length), [V] each) that stored block i ([i·block, (i+1)·block)) covers."""
  start, length = tf.cast(start, tf.float64), tf.cast(length, tf.float64)
  cell = (length / float(cells))[:, None, None]
  lo = start[:, None, None] + tf.range(cells, dtype=tf.float64)[None, :, None] * cell
  block = tf.cast(block, tf.float64)
  b_lo = tf.range(tf.cast(blocks, tf.float64), dtype=tf.float64)[None, None, :] * block
  overlap = tf.minimum(lo + cell, b_lo + block) - tf.maximum(lo, b_lo)
  return tf.maximum(overlap, 0.0) / cell


@_plain
def motion_to_grid(field, boxes, stored_block, grid) -> tf.Tensor:
  """float32 [V, T, g_h, g_w, C]: the block fields `field` [V, T, gh, gw, C] (block (i, j) covers
  stored pixels [i·b, (i+1)·b) × [j·b, (j+1)·b), b = `stored_block`) cropped to `boxes` [V, 4] =
  (y, x, h, w) (stored pixels, may be fractional) and averaged over each cell of a `grid` =
  (g_h, g_w) split of the box: the area-weighted mean of the blocks the cell overlaps (area
  outside the field counts as 0). Values are not rescaled."""
  boxes = tf.cast(boxes, tf.float64)
  shape = tf.shape(field)
  rows = _cell_weights(boxes[:, 0], boxes[:, 2], grid[0], stored_block, shape[2])
  cols = _cell_weights(boxes[:, 1], boxes[:, 3], grid[1], stored_block, shape[3])
  out = tf.einsum("vrh,vthwc,vqw->vtrqc", rows, tf.cast(field, tf.float64), cols)
  return tf.cast(out, tf.float32)


@_plain
def clip_motion(
  vectors, valid, stored_block, positions, boxes, size: int, block: int
) -> tuple[tf.Tensor, tf.Tensor]:
  """(`motion` float32 [V, T, g, g, 2], `motion_valid` float32 [V, T, g, g]), g = size / block:
  the codec motion of V clips whose frames are `positions` [V, T] (`motion_steps`) and whose
  pixels are `boxes` [V, 4] = (y, x, h, w) (stored pixels) resized to `size` × `size`:
  `motion_to_grid` onto the g × g cells of each box, then (dx, dy) scaled to model pixels by
  (size / w, size / h)."""
  _check_size(size)
  _check_size(block)
  if size % block:
    raise ValueError(f"image_size {size} must be a multiple of motion_block {block}")
  g = size // block
  moved, share = motion_steps(vectors, valid, positions)
  grid = motion_to_grid(tf.concat([moved, share[..., None]], -1), boxes, stored_block, (g, g))
  boxes = tf.cast(boxes, tf.float64)
  scale = tf.cast(tf.stack([size / boxes[:, 3], size / boxes[:, 2]], -1), tf.float32)
  views, num_out = positions.shape[0], positions.shape[1]
  return (
    tf.ensure_shape(grid[..., :2] * scale[:, None, None, None, :], [views, num_out, g, g, 2]),
    tf.ensure_shape(grid[..., 2], [views, num_out, g, g]),
  )


@_plain
def spatial_crop_boxes(height, width, size: int, num_crops: int = 3) -> tf.Tensor:
  """float64 [num_crops, 4]: the (y, x, h, w) in the frame's pixels (fractional) that each view
  of `spatial_crops` shows (its short-side resize and crop mapped back)."""
  if int(num_crops) != num_crops or num_crops < 1:
    raise ValueError(f"num_crops must be an integer >= 1, got {num_crops}")
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  new_h = tf.where(height <= width, size, (size * height) // width)  # as resize_short_side
  new_w = tf.where(height <= width, (size * width) // height, size)
  if num_crops == 1:  # as resize_center_crop
    starts = [((new_h - size) // 2, (new_w - size) // 2)]
  else:  # as spatial_crops
    along_h = new_h >= new_w
    step = tf.cast(tf.maximum(new_h, new_w) - size, tf.float64) / float(num_crops - 1)
    starts = []
    for k in range(num_crops):
      start = tf.cast(tf.floor(float(k) * step), tf.int32)
      starts.append((tf.where(along_h, start, 0), tf.where(along_h, 0, start)))
  fy = tf.cast(height, tf.float64) / tf.cast(new_h, tf.float64)  # frame px per resized px
  fx = tf.cast(width, tf.float64) / tf.cast(new_w, tf.float64)
  return tf.stack(
    [
      tf.stack([tf.cast(y, tf.float64) * fy, tf.cast(x, tf.float64) * fx, size * fy, size * fx])
      for y, x in starts
    ]
  )
