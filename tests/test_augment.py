"""RandAugment / random erasing: every op against Pillow, one draw per clip, draw statistics,
erased boxes within the reference's ranges, eager == tf.data graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from mgvm.data import augment as aug

FILL = (128, 128, 128)


def _clip(h=20, w=28):
  """uint8 [4, h, w, 3], frames with different statistics (per-frame ops must not mix them):
  full-range noise, mid-range noise, a smooth image, and a frame with a constant channel and
  a channel whose histogram is one big bin plus < 255 other pixels (equalize's step == 0)."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:h, 0:w]
  smooth = np.stack(
    [128 + 100 * np.sin(xx / 5 + yy / 7), 128 + 80 * np.cos(yy / 4), (xx * 7 + yy * 3) % 200 + 20],
    -1,
  )
  odd = np.stack([np.full((h, w), 77), np.full((h, w), 200), rng.integers(0, 256, (h, w))], -1)
  odd[:2, :5, 1] = rng.integers(0, 256, (2, 5))
  frames = [rng.integers(0, 256, (h, w, 3)), rng.integers(40, 181, (h, w, 3)), smooth, odd]
  return np.stack(frames).astype(np.uint8)


def _pil(fn, clip):
  return np.stack([np.asarray(fn(Image.fromarray(frame))) for frame in clip])


def _assert_pil(ours, ref, exact):
  """Integer-only ops must match Pillow exactly. Ops with float arithmetic (blend, SMOOTH,
  bilinear) match exactly on x86-64 too; a build of Pillow whose compiler fuses multiply-adds
  may differ by one grey level, so those allow <= 1 on at most 0.5% of the values (a wrong
  rounding rule or coordinate convention changes far more)."""
  ours, ref = np.asarray(ours).astype(int), ref.astype(int)
  assert ours.shape == ref.shape
  diff = np.abs(ours - ref)
  if exact:
    np.testing.assert_array_equal(ours, ref)
  else:
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.005, (diff.max(), (diff > 0).mean())


def _solarize_add_pil(img, add, threshold=128):
  return img.point([min(255, i + add) if i < threshold else i for i in range(256)] * 3)


PIXEL_CASES = [
  ("invert", aug.invert, ImageOps.invert, True),
  ("autocontrast", aug.autocontrast, ImageOps.autocontrast, True),
  ("equalize", aug.equalize, ImageOps.equalize, True),
  (
    "grayscale",
    lambda f: tf.cast(tf.repeat(aug.grayscale(f), 3, -1), tf.uint8),
    lambda i: i.convert("L").convert("RGB"),
    True,
  ),
  ("smooth", aug.smooth, lambda i: i.filter(ImageFilter.SMOOTH), False),
]
PIXEL_CASES += [
  (
    f"posterize{b}",
    lambda f, b=b: aug.posterize(f, b),
    lambda i, b=b: ImageOps.posterize(i, b),
    True,
  )
  for b in (1, 2, 4, 8)
]
PIXEL_CASES += [
  (f"solarize{t}", lambda f, t=t: aug.solarize(f, t), lambda i, t=t: ImageOps.solarize(i, t), True)
  for t in (0, 128, 200, 256)
]
PIXEL_CASES += [
  (
    f"solarize_add{a}",
    lambda f, a=a: aug.solarize_add(f, a),
    lambda i, a=a: _solarize_add_pil(i, a),
    True,
  )
  for a in (0, 40, 110)
]
for _name, _enhancer in [
  ("color", ImageEnhance.Color),
  ("contrast", ImageEnhance.Contrast),
  ("brightness", ImageEnhance.Brightness),
  ("sharpness", ImageEnhance.Sharpness),
]:
  PIXEL_CASES += [
    (
      f"{_name}{f}",
      lambda x, n=_name, f=f: getattr(aug, n)(x, f),
      lambda i, e=_enhancer, f=f: e(i).enhance(f),
      False,
    )
    for f in (0.0, 0.3, 1.0, 1.7)
  ]


@pytest.mark.parametrize("name,ours,ref,exact", PIXEL_CASES, ids=[c[0] for c in PIXEL_CASES])
def test_pixel_ops_match_pil_per_frame(name, ours, ref, exact):
  clip = _clip()
  out = ours(clip)
  assert out.dtype == tf.uint8
  _assert_pil(out, _pil(ref, clip), exact)


def _affine_pil(matrix):
  return lambda i: i.transform(i.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=FILL)


GEOMETRIC_CASES = [
  (
    f"rotate{a}",
    lambda f, a=a: aug.rotate(f, a, FILL),
    lambda i, a=a: i.rotate(a, resample=Image.BILINEAR, fillcolor=FILL),
  )
  for a in (-30.0, -13.7, 8.5, 30.0, 90.0)
]
for _s in (-0.3, 0.17):
  GEOMETRIC_CASES += [
    (f"shear_x{_s}", lambda f, s=_s: aug.shear_x(f, s, FILL), _affine_pil((1, _s, 0, 0, 1, 0))),
    (f"shear_y{_s}", lambda f, s=_s: aug.shear_y(f, s, FILL), _affine_pil((1, 0, 0, _s, 1, 0))),
  ]
for _p in (-7.3, 4.0):
  GEOMETRIC_CASES += [
    (
      f"translate_x{_p}",
      lambda f, p=_p: aug.translate_x(f, p, FILL),
      _affine_pil((1, 0, _p, 0, 1, 0)),
    ),
    (
      f"translate_y{_p}",
      lambda f, p=_p: aug.translate_y(f, p, FILL),
      _affine_pil((1, 0, 0, 0, 1, _p)),
    ),
  ]


@pytest.mark.parametrize("name,ours,ref", GEOMETRIC_CASES, ids=[c[0] for c in GEOMETRIC_CASES])
@pytest.mark.parametrize("size", [(20, 28), (24, 24)])
def test_geometric_ops_match_pil_bilinear(name, ours, ref, size):
  # PIL's bilinear affine (pixel centres, fill outside, clamped neighbours, truncation) is
  # reproduced in float64, so even noise images match; 90° on a square image is PIL's transpose.
  clip = _clip(*size)
  _assert_pil(ours(clip), _pil(ref, clip), exact=False)


def _reference_op(name, img, magnitude, sign):
  """One RandAugment op on a PIL image with timm's level functions (VideoMAE's inc1 set)."""
  level = magnitude / 10.0
  enhance = 1.0 + sign * level * 0.9
  w, h = img.size
  affine = lambda m: img.transform(img.size, Image.AFFINE, m, Image.BILINEAR, fillcolor=FILL)
  return {
    "AutoContrast": lambda: ImageOps.autocontrast(img),
    "Equalize": lambda: ImageOps.equalize(img),
    "Invert": lambda: ImageOps.invert(img),
    "Rotate": lambda: img.rotate(sign * level * 30.0, resample=Image.BILINEAR, fillcolor=FILL),
    "PosterizeIncreasing": lambda: ImageOps.posterize(img, 4 - int(level * 4)),
    "SolarizeIncreasing": lambda: ImageOps.solarize(img, 256 - int(level * 256)),
    "SolarizeAdd": lambda: _solarize_add_pil(img, int(level * 110)),
    "ColorIncreasing": lambda: ImageEnhance.Color(img).enhance(enhance),
    "ContrastIncreasing": lambda: ImageEnhance.Contrast(img).enhance(enhance),
    "BrightnessIncreasing": lambda: ImageEnhance.Brightness(img).enhance(enhance),
    "SharpnessIncreasing": lambda: ImageEnhance.Sharpness(img).enhance(enhance),
    "ShearX": lambda: affine((1, sign * level * 0.3, 0, 0, 1, 0)),
    "ShearY": lambda: affine((1, 0, 0, sign * level * 0.3, 1, 0)),
    "TranslateXRel": lambda: affine((1, 0, sign * level * 0.45 * w, 0, 1, 0)),
    "TranslateYRel": lambda: affine((1, 0, 0, 0, 1, sign * level * 0.45 * h)),
  }[name]()


def _params(ops, magnitudes, signs, apply=None):
  return {
    "op": tf.constant(ops, tf.int32),
    "apply": tf.constant([True] * len(ops) if apply is None else apply),
    "magnitude": tf.constant(magnitudes, tf.float32),
    "sign": tf.constant(signs, tf.float32),
  }


@pytest.mark.parametrize("index", range(len(aug.OP_NAMES)), ids=aug.OP_NAMES)
def test_each_rand_augment_op_and_level_matches_timm_on_pil(index):
  name = aug.OP_NAMES[index]
  clip = _clip()
  for magnitude, sign in [(7.3, -1.0), (9.6, 1.0), (0.0, 1.0)]:
    magnitude = float(np.float32(magnitude))  # the drawn magnitude is float32
    out = aug.apply_rand_augment(clip, _params([index], [magnitude], [sign]), FILL)
    assert out.dtype == tf.float32 and out.shape == clip.shape
    ref = _pil(lambda i: _reference_op(name, i, magnitude, sign), clip)
    _assert_pil(out, ref, exact=False)


def test_rand_augment_layers_compose_in_order_and_skip_unapplied():
  clip = _clip()
  names = ["Rotate", "Equalize", "SolarizeIncreasing", "ShearY"]
  ops = [aug.OP_NAMES.index(n) for n in names]
  mags, signs, apply = [6.5, 7.0, 8.25, 7.75], [1.0, -1.0, 1.0, -1.0], [True, True, False, True]
  out = aug.apply_rand_augment(clip, _params(ops, mags, signs, apply), FILL)

  def reference(img):
    for n, m, s, a in zip(names, mags, signs, apply):
      img = _reference_op(n, img, m, s) if a else img
    return img

  _assert_pil(out, _pil(reference, clip), exact=False)


def _in_graph(fn, *args):
  ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(fn)
  return tf.nest.map_structure(np.asarray, next(iter(ds.as_numpy_iterator())))


def test_rand_augment_deterministic_one_draw_per_clip_and_graph_equals_eager():
  clip = _clip(24, 24)
  outs = []
  for i in range(4):
    seed = tf.constant([3, i], tf.int64)
    out = aug.rand_augment(clip, seed).numpy()
    outs.append(out)
    assert out.dtype == np.float32 and out.shape == clip.shape
    assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
    np.testing.assert_array_equal(out, aug.rand_augment(clip, seed).numpy())
    np.testing.assert_array_equal(out, aug.rand_augment(clip.astype(np.float32), seed).numpy())
    # The params are drawn per clip (none depend on the frames): splitting the clip into
    # sub-clips with the same params gives the same frames.
    params = aug.rand_augment_params(seed)
    np.testing.assert_array_equal(out, aug.apply_rand_augment(clip, params).numpy())
    parts = [aug.apply_rand_augment(clip[:1], params), aug.apply_rand_augment(clip[1:], params)]
    np.testing.assert_array_equal(out, np.concatenate(parts))
    same = np.repeat(clip[2:3], 3, axis=0)
    same_out = aug.rand_augment(same, seed).numpy()
    assert all(np.array_equal(same_out[0], f) for f in same_out)
  assert len({o.tobytes() for o in outs}) == len(outs)
  np.testing.assert_array_equal(outs[0], _in_graph(aug.rand_augment, clip, [3, 0]))


def test_rand_augment_identity_without_layers_or_probability():
  clip = _clip()
  for kwargs in [dict(prob=0.0), dict(num_layers=0)]:
    for i in range(3):
      out = aug.rand_augment(clip, tf.constant([i, 1]), **kwargs)
      np.testing.assert_array_equal(out.numpy(), clip.astype(np.float32))


def test_rand_augment_draw_statistics():
  n = 1500
  ds = tf.data.Dataset.range(n).map(lambda i: aug.rand_augment_params(tf.stack([i, 5 * i])))
  p = next(iter(ds.batch(n)))
  ops, mags = p["op"].numpy().ravel(), p["magnitude"].numpy().ravel()
  apply, sign = p["apply"].numpy().ravel(), p["sign"].numpy().ravel()
  draws = ops.size  # n clips x 4 layers
  assert p["op"].shape == (n, 4)
  # Magnitude ~ N(7, 0.5): mean within 5 standard errors, std within 10%.
  assert abs(mags.mean() - 7.0) < 5 * 0.5 / math.sqrt(draws)
  assert abs(mags.std() - 0.5) < 0.05
  # Ops uniform with replacement over the 15: every count within 5 sigma of draws / 15.
  counts = np.bincount(ops, minlength=len(aug.OP_NAMES))
  expected = draws / len(aug.OP_NAMES)
  assert counts.size == 15 and np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))
  # Layers of one clip are independent: repeats within a clip occur (with replacement).
  assert any(len(set(row)) < 4 for row in p["op"].numpy())
  for flags in (apply, sign > 0):
    assert abs(flags.mean() - 0.5) < 5 * 0.5 / math.sqrt(draws)
  assert set(np.unique(sign)) == {-1.0, 1.0}
  # Clipping to [0, 10].
  high = aug.rand_augment_params([0, 1], magnitude=9.8, num_layers=400)["magnitude"].numpy()
  assert high.max() == 10.0 and high.min() >= 0 and (high == 10.0).mean() > 0.2
  fixed = aug.rand_augment_params([0, 1], magnitude_std=0.0)["magnitude"].numpy()
  np.testing.assert_array_equal(fixed, 7.0)


def _boxes(before, after):
  """(top, left, h, w) of the changed pixels of every frame, None where none; asserts that the
  changed pixels of a frame fill exactly one rectangle in all channels."""
  boxes = []
  for b, a in zip(before, after):
    changed = np.any(a != b, axis=-1)
    if not changed.any():
      boxes.append(None)
      continue
    ys, xs = np.nonzero(changed)
    top, left, h, w = ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert changed.sum() == h * w and np.all(a[top : top + h, left : left + w] != b[0, 0])
    boxes.append((int(top), int(left), int(h), int(w)))
  return boxes


def _check_box(box, height, width, area=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3)):
  """The box can come from an area fraction in `area` and an aspect h/w in `ratio`, given
  h = round(sqrt(A r)), w = round(sqrt(A / r)) (each within 0.5 of its square root)."""
  _, _, h, w = box
  assert h < height and w < width
  lo_area, hi_area = (h - 0.5) * (w - 0.5), (h + 0.5) * (w + 0.5)
  assert lo_area <= area[1] * height * width and hi_area >= area[0] * height * width
  assert (h - 0.5) / (w + 0.5) <= ratio[1] and (h + 0.5) / (w - 0.5) >= ratio[0]


def test_random_erasing_boxes_per_frame_and_per_clip():
  t, hgt, wid = 6, 32, 40
  video = np.full((t, hgt, wid, 3), 5.0, np.float32)  # normal noise never hits 5.0
  np.testing.assert_array_equal(aug.random_erasing(video, [1, 2], prob=0.0), video)
  all_boxes = []
  for i in range(8):
    boxes = _boxes(
      video, aug.random_erasing(video, [i, 7], prob=1.0, same_for_all_frames=False).numpy()
    )
    assert None not in boxes
    for box in boxes:
      _check_box(box, hgt, wid)
    assert len(set(boxes)) > 1  # independent boxes per frame
    all_boxes += boxes
    out = aug.random_erasing(video, [i, 7], prob=1.0, same_for_all_frames=True).numpy()
    tube = _boxes(video, out)
    assert None not in tube and len(set(tube)) == 1
    _check_box(tube[0], hgt, wid)
    top, left, h, w = tube[0]
    box = np.s_[top : top + h, left : left + w]
    assert not np.array_equal(out[0][box], out[1][box])  # fresh noise per frame in the tube
  areas = [h * w / (hgt * wid) for _, _, h, w in all_boxes]
  assert min(areas) < 0.1 and max(areas) > 0.2  # the area range is used, not one size
  # Decisions: per clip (all frames or none) vs per frame, rate ~ prob.
  per_clip = [_boxes(video, aug.random_erasing(video, [i, 9], prob=0.5).numpy()) for i in range(24)]
  assert all(len({b is None for b in boxes}) == 1 for boxes in per_clip)
  assert 3 <= sum(boxes[0] is not None for boxes in per_clip) <= 21
  per_frame = np.array(
    [
      [
        b is not None
        for b in _boxes(
          video, aug.random_erasing(video, [i, 9], prob=0.5, same_for_all_frames=False).numpy()
        )
      ]
      for i in range(10)
    ]
  )
  assert 0.25 < per_frame.mean() < 0.75 and per_frame.shape == (10, t)
  assert any(0 < row.sum() < t for row in per_frame)  # decisions differ within a clip
  # Boxes must be strictly smaller than the image: with area fractions near 1 most candidates
  # do not fit (h or w rounds up to the side), and frames whose attempts all fail stay intact.
  many = np.full((40, hgt, wid, 3), 5.0, np.float32)
  big = _boxes(
    many,
    aug.random_erasing(
      many, [0, 3], prob=1.0, area=(0.9, 1.0), same_for_all_frames=False, attempts=3
    ).numpy(),
  )
  assert None in big and any(big)
  for box in filter(None, big):
    _check_box(box, hgt, wid, area=(0.9, 1.0))


@pytest.mark.parametrize("same", [False, True])
def test_random_erasing_noise_determinism_and_graph(same):
  video = np.random.default_rng(1).normal(3.0, 0.1, (4, 48, 48, 3)).astype(np.float32)
  seed = tf.constant([4, 2], tf.int64)
  fn = lambda v, s: aug.random_erasing(v, s, prob=1.0, area=(0.3, 1 / 3), same_for_all_frames=same)
  out = fn(video, seed).numpy()
  np.testing.assert_array_equal(out, fn(video, seed).numpy())
  np.testing.assert_array_equal(out, _in_graph(fn, video, seed))
  erased = out[out != video]
  assert erased.size > 4 * 0.25 * 48 * 48 * 3
  assert abs(erased.mean()) < 5 / math.sqrt(erased.size) and abs(erased.std() - 1) < 0.05
  assert not np.array_equal(out, fn(video, tf.constant([4, 3], tf.int64)).numpy())
