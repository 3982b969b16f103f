"""Clip ops: eager == tf.data graph for a seed, one crop per clip, hand-checked geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import video_ops as ops


def _clip(t=3, h=40, w=56, step=10, seed=0):
  """uint8 [t, h, w, 3]: one random image, frame k = image + k * step (a per-frame marker)."""
  base = np.random.default_rng(seed).integers(0, 100, (h, w, 3))
  return np.stack([base + k * step for k in range(t)]).astype(np.uint8)


def _in_graph(fn, *args):
  """Runs `fn(*args)` inside a tf.data map (graph mode)."""
  ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(fn)
  return tf.nest.map_structure(np.asarray, next(iter(ds.as_numpy_iterator())))


def _box(fn, *args):
  return tuple(int(v) for v in fn(*args))


@pytest.mark.parametrize("name", ["multi_scale_crop", "random_resized_crop", "random_flip"])
def test_random_ops_eager_equals_graph_and_one_geometry_per_clip(name):
  clip = _clip()
  op = {
    "multi_scale_crop": lambda f, s: ops.multi_scale_crop(f, 24, s),
    "random_resized_crop": lambda f, s: ops.random_resized_crop(f, 24, s),
    "random_flip": lambda f, s: ops.random_flip(tf.cast(f, tf.float32), s),
  }[name]
  for i in range(4):
    seed = tf.constant([7, i], tf.int64)
    eager = op(clip, seed).numpy()
    np.testing.assert_array_equal(eager, _in_graph(op, clip, seed))
    # Frame k = frame 0 + 10 k everywhere (bilinear weights sum to 1): the same box for all.
    for k in range(clip.shape[0]):
      np.testing.assert_allclose(eager[k], eager[0] + 10 * k, atol=1e-3)
  same = np.repeat(clip[:1], 4, axis=0)
  out = op(same, tf.constant([1, 2])).numpy()
  assert all(np.array_equal(out[0], out[k]) for k in range(4))


@pytest.mark.parametrize("name", ["resize_center_crop", "spatial_crops", "normalize"])
def test_deterministic_ops_eager_equals_graph(name):
  clip = _clip(h=37, w=61)
  op = {
    "resize_center_crop": lambda f: ops.resize_center_crop(f, 24),
    "spatial_crops": lambda f: ops.spatial_crops(f, 24, 3),
    "normalize": ops.normalize,
  }[name]
  np.testing.assert_array_equal(op(clip).numpy(), _in_graph(op, clip))


def _jpegs(values, h=16, w=24):
  out = []
  for v in values:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1] = v, 255 - v
    out.append(tf.io.encode_jpeg(img, quality=100).numpy())
  return tf.constant(out)


def test_decode_frames_decodes_only_the_chosen_frames():
  jpegs = _jpegs([0, 40, 80, 120, 160, 200])
  frames = ops.decode_frames(jpegs, [4, 0, 4, 5]).numpy()
  assert frames.shape == (4, 16, 24, 3) and frames.dtype == np.uint8
  np.testing.assert_allclose(frames[..., 0].mean(axis=(1, 2)), [160, 0, 160, 200], atol=2)
  two_d = ops.decode_frames(jpegs, [[1, 2], [3, 3]]).numpy()
  assert two_d.shape == (2, 2, 16, 24, 3)
  graph = _in_graph(ops.decode_frames, jpegs, tf.constant([4, 0, 4, 5]))
  np.testing.assert_array_equal(frames, graph)
  # A corrupt, unselected frame is never decoded.
  broken = tf.concat([jpegs[:2], tf.constant([b"not a jpeg"])], 0)
  assert ops.decode_frames(broken, [1, 0]).shape == (2, 16, 24, 3)


def _reference_multi_scale_boxes(
  h, w, size, scales=(1, 0.875, 0.75, 0.66), max_distort=1, more_fix_crop=True
):
  """Every (y, x, h, w) GroupMultiScaleCrop can choose, from its written rules."""
  base = min(h, w)
  sides = [int(base * s) for s in scales]
  sides = [size if abs(v - size) < 3 else v for v in sides]
  boxes = set()
  for i, j in itertools.product(range(len(scales)), repeat=2):
    if abs(i - j) > max_distort:
      continue
    ch, cw = sides[i], sides[j]
    ws, hs = (w - cw) // 4, (h - ch) // 4
    positions = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more_fix_crop:
      positions += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    boxes |= {(b * hs, a * ws, ch, cw) for a, b in positions}
  return boxes


@pytest.mark.parametrize("h, w, more", [(40, 56, True), (64, 48, False)])
def test_multi_scale_crop_box_follows_the_reference_rules(h, w, more):
  allowed = _reference_multi_scale_boxes(h, w, 32, more_fix_crop=more)
  seeds = tf.stack([tf.fill([600], 3), tf.range(600)], axis=1)
  draw = lambda seed: tf.stack(ops.multi_scale_crop_box(h, w, 32, seed, more_fix_crop=more))
  boxes = tf.data.Dataset.from_tensor_slices(seeds).map(draw).batch(600).get_single_element()
  got = {tuple(b) for b in boxes.numpy().tolist()}
  assert got <= allowed
  assert len(got) >= 0.9 * len(allowed)  # practically all of them get drawn
  if (h, w) == (40, 56):
    # base 40: sides int(40 * scales) = 40, 35, 30, 26; 30 is within 3 px of 32 -> 32.
    assert {b[2] for b in got} == {40, 35, 32, 26}
    assert (0, 0, 40, 26) not in allowed  # scale indices 0 and 3: too distorted


def test_multi_scale_crop_cuts_the_chosen_box():
  # Pixel (y, x) holds (y, x, 0): an output of the crop size is the exact slice.
  yy, xx = np.meshgrid(np.arange(40), np.arange(56), indexing="ij")
  image = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)[None]
  for i in range(40):
    seed = tf.constant([5, i])
    y, x, h, w = _box(ops.multi_scale_crop_box, 40, 56, 32, seed)
    out = ops.multi_scale_crop(image, 32, seed).numpy()[0]
    if (h, w) == (32, 32):
      np.testing.assert_array_equal(out, image[0, y : y + 32, x : x + 32])
    expected = tf.image.resize(image[:, y : y + h, x : x + w], [32, 32]).numpy()[0]
    np.testing.assert_array_equal(out, expected)


def test_random_resized_crop_box_matches_torchvision_rules():
  h, w = 30, 50
  for i in range(100):
    seed = tf.constant([11, i], tf.int64)
    got = _box(ops.random_resized_crop_box, h, w, seed)
    # The same draws through the torchvision rules: first of 10 attempts that fits.
    s_area, s_ratio, s_y, s_x = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    area = h * w * tf.random.stateless_uniform([10], s_area, 0.08, 1.0, tf.float64).numpy()
    logr = tf.random.stateless_uniform(
      [10], s_ratio, math.log(3 / 4), math.log(4 / 3), tf.float64
    ).numpy()
    for a, r in zip(area, np.exp(logr)):
      cw, ch = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
      if 0 < cw <= w and 0 < ch <= h:
        break
    else:
      raise AssertionError("10 attempts all failed; pick another image size")
    y, x, gh, gw = got
    assert (gh, gw) == (ch, cw)
    assert 0 <= y <= h - ch and 0 <= x <= w - cw


@pytest.mark.parametrize(
  "h, w, box",
  [
    (40, 100, (0, 23, 40, 53)),  # too wide: h = H, w = round(40 * 4/3) = 53, centred
    (100, 40, (23, 0, 53, 40)),  # too tall: w = W, h = round(40 / (3/4)) = 53
    (40, 45, (0, 0, 40, 45)),
  ],
)  # aspect within range: the whole image
def test_random_resized_crop_fallback_is_a_centre_crop(h, w, box):
  # An area fraction of 4 never fits, so all attempts fail.
  assert _box(ops.random_resized_crop_box, h, w, [0, 1], (4.0, 4.0)) == box


def test_random_flip_flips_about_half_the_clips():
  clip = tf.constant(_clip(t=2, h=4, w=5), tf.float32)
  flipped = 0
  for i in range(200):
    out = ops.random_flip(clip, [9, i]).numpy()
    if np.array_equal(out, clip.numpy()[:, :, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(out, clip.numpy())
  assert 70 < flipped < 130
  assert np.array_equal(ops.random_flip(clip, [9, 0], prob=0.0).numpy(), clip.numpy())


def test_resize_center_crop_by_hand():
  # 4 x 8 image, size 2: halving with half-pixel centres averages 2x2 blocks -> 2 x 4,
  # centre crop x offset (4 - 2) // 2 = 1, i.e. source columns 2..5.
  image = np.arange(32, dtype=np.float32).reshape(1, 4, 8, 1).repeat(3, -1)
  blocks = image[0, :, :, 0].reshape(2, 2, 4, 2).mean(axis=(1, 3))
  out = ops.resize_center_crop(image, 2).numpy()
  np.testing.assert_allclose(out[0, :, :, 0], blocks[:, 1:3], atol=1e-5)
  # Short side already the size: a plain centre slice.
  image = _clip(t=2, h=8, w=13)
  np.testing.assert_array_equal(ops.resize_center_crop(image, 8).numpy(), image[:, :, 2:10])
  tall = _clip(t=2, h=13, w=8)
  np.testing.assert_array_equal(ops.resize_center_crop(tall, 8).numpy(), tall[:, 2:10])


def test_spatial_crops_start_centre_end():
  wide = _clip(t=2, h=8, w=13)  # step (13 - 8) / 2 = 2.5 -> starts 0, 2, 5
  out = ops.spatial_crops(wide, 8, 3).numpy()
  assert out.shape == (3, 2, 8, 8, 3)
  for k, start in enumerate([0, 2, 5]):
    np.testing.assert_array_equal(out[k], wide[:, :, start : start + 8])
  tall = _clip(t=2, h=14, w=8)  # along H: 0, 3, 6
  out = ops.spatial_crops(tall, 8, 3).numpy()
  for k, start in enumerate([0, 3, 6]):
    np.testing.assert_array_equal(out[k], tall[:, start : start + 8])
  np.testing.assert_array_equal(
    ops.spatial_crops(wide, 8, 1).numpy()[0], ops.resize_center_crop(wide, 8).numpy()
  )
  # Resized first: 16 x 26 -> 8 x 13, then the same crops.
  big = _clip(t=1, h=16, w=26)
  np.testing.assert_allclose(
    ops.spatial_crops(big, 8, 3).numpy()[2], ops.resize_short_side(big, 8).numpy()[:, :, 5:13]
  )


def test_normalize_exact_values():
  pixels = np.array([[0, 0, 0], [255, 255, 255], [124, 116, 104]], np.uint8)
  out = ops.normalize(pixels).numpy()
  mean, std = np.float32(ops.MEAN), np.float32(ops.STD)
  np.testing.assert_array_equal(out, (pixels.astype(np.float32) / np.float32(255) - mean) / std)
  np.testing.assert_allclose(out[0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
  np.testing.assert_allclose(out[1], [0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225], rtol=1e-6)
  assert out.dtype == np.float32


def test_bad_arguments_name_the_value():
  with pytest.raises(ValueError, match="size"):
    ops.resize_center_crop(_clip(), 0)
  with pytest.raises(ValueError, match="num_crops"):
    ops.spatial_crops(_clip(), 8, 0)
  with pytest.raises(ValueError, match="prob"):
    ops.random_flip(_clip(), [0, 0], prob=1.5)
  with pytest.raises(ValueError, match="scale"):
    ops.random_resized_crop(_clip(), 8, [0, 0], scale=(0.5, 0.1))
