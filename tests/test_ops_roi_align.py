"""mgvm.ops.roi_align: torchvision kernel rule (loop-based NumPy transcription), compiled kernel
parity where torchvision's op runs, detectron2 level assignment, jit / vmap / grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm import ops
from mgvm.ops.roi_align import assign_levels

F32 = np.float32
# Eager calls compile every primitive on first use (seconds); the tests call jitted versions.
roi_align = jax.jit(ops.roi_align, static_argnums=(3, 4, 5, 6))
multilevel_roi_align = jax.jit(ops.multilevel_roi_align, static_argnums=(1, 4, 5))
levels = jax.jit(assign_levels, static_argnums=(1, 2))


def _bilinear(fmap: np.ndarray, y: np.float32, x: np.float32) -> np.ndarray:
  """torchvision `bilinear_interpolate` (roi_align_kernel.cpp) on fmap [H, W, C]."""
  h, w = fmap.shape[:2]
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(fmap.shape[-1], F32)
  y, x = max(y, F32(0)), max(x, F32(0))
  y_low, x_low = int(y), int(x)
  if y_low >= h - 1:
    y_high = y_low = h - 1
    y = F32(y_low)
  else:
    y_high = y_low + 1
  if x_low >= w - 1:
    x_high = x_low = w - 1
    x = F32(x_low)
  else:
    x_high = x_low + 1
  ly, lx = F32(y - y_low), F32(x - x_low)
  hy, hx = F32(1) - ly, F32(1) - lx
  return (
    hy * hx * fmap[y_low, x_low]
    + hy * lx * fmap[y_low, x_high]
    + ly * hx * fmap[y_high, x_low]
    + ly * lx * fmap[y_high, x_high]
  )


def _reference(features, boxes, batch_index, oh, ow, scale, ratio, aligned):
  """Loop transcription of the kernel's forward, float32 arithmetic as in C++ `float`.

  Measured bit-identical (max difference 0.0) to torchvision 0.29.1's compiled CPU kernel.
  """
  scale = F32(scale)
  offset = F32(0.5) if aligned else F32(0)
  out = np.zeros((len(boxes), oh, ow, features.shape[-1]), F32)
  for k, (box, b) in enumerate(zip(boxes.astype(F32), batch_index)):
    x1, y1, x2, y2 = (F32(v * scale - offset) for v in box)
    roi_w, roi_h = F32(x2 - x1), F32(y2 - y1)
    if not aligned:
      roi_w, roi_h = max(roi_w, F32(1)), max(roi_h, F32(1))
    bin_h, bin_w = F32(roi_h / F32(oh)), F32(roi_w / F32(ow))
    for ph in range(oh):
      for pw in range(ow):
        acc = np.zeros(features.shape[-1], F32)
        for iy in range(ratio):
          y = F32(y1 + F32(ph) * bin_h + F32(F32(iy + 0.5) * bin_h) / F32(ratio))
          for ix in range(ratio):
            x = F32(x1 + F32(pw) * bin_w + F32(F32(ix + 0.5) * bin_w) / F32(ratio))
            acc += _bilinear(features[b], y, x)
        out[k, ph, pw] = acc / F32(ratio * ratio)
  return out


# Map 9×11 at scale 0.5: the input image is 18×22 px.
H, W, SCALE = 9, 11, 0.5
CASES = {
  "inside": np.array(
    [[1.0, 2.0, 20.0, 15.0], [0.0, 0.0, 22.0, 18.0], [3.3, 4.7, 9.1, 6.2], [10.0, 1.0, 21.5, 17.5]]
  ),
  "partly_outside": np.array(
    [
      [-6.0, -4.0, 8.0, 9.0],
      [15.0, 10.0, 30.0, 26.0],
      [-3.0, 5.0, 25.0, 12.0],
      [5.0, -9.0, 12.0, 30.0],
    ]
  ),
  "outside": np.array(
    [
      [30.0, 2.0, 40.0, 10.0],
      [-20.0, -20.0, -5.0, -6.0],
      [2.0, 24.0, 9.0, 36.0],
      [-2.5, -2.5, -0.5, -0.5],
      [22.5, 18.5, 24.0, 20.0],
    ]
  ),
  "tiny": np.array(
    [[4.0, 4.0, 4.6, 4.3], [7.2, 3.1, 7.2, 3.1], [20.9, 17.9, 21.4, 18.6], [5.0, 5.0, 4.5, 4.0]]
  ),
}


def _features(seed=0, b=2, c=3):
  return np.random.default_rng(seed).standard_normal((b, H, W, c)).astype(F32)


def _batch_index(k):
  return np.arange(k) % 2


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio,size", [(1, (3, 3)), (2, (7, 5)), (3, (2, 4))])
def test_matches_kernel_rule(aligned, ratio, size):
  feats = _features()
  for name, boxes in CASES.items():
    bi = _batch_index(len(boxes))
    ours = np.asarray(roi_align(feats, boxes.astype(F32), bi, size, SCALE, ratio, aligned))
    ref = _reference(feats, boxes, bi, *size, SCALE, ratio, aligned)
    assert ours.shape == (len(boxes), *size, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0, err_msg=name)
    if name == "outside":  # far-away boxes read nothing; one within 1 px of the border does
      assert np.all(ours[:3] == 0) and np.abs(ours[3]).max() > 0


def _torch_roi_align():
  """torchvision.ops.roi_align when its compiled op runs here, else a pytest skip."""
  torch = pytest.importorskip("torch")
  try:
    import torchvision

    torch.ops.torchvision.roi_align(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), 1.0, 1, 1, 2, True)
  except Exception as e:  # noqa: BLE001 - any import / dispatch failure means no compiled kernel
    first_line = str(e).splitlines()[0] if str(e) else ""
    pytest.skip(
      f"torchvision's compiled roi_align does not run here ({type(e).__name__}: "
      f"{first_line}); test_matches_kernel_rule checks the kernel's rule instead"
    )
  return torch, torchvision


@pytest.mark.parametrize("aligned", [True, False])
def test_matches_torchvision_kernel(aligned):
  torch, torchvision = _torch_roi_align()
  feats = _features(1, c=5)
  nchw = torch.from_numpy(feats.transpose(0, 3, 1, 2).copy())
  worst = {}
  for name, boxes in CASES.items():
    bi = _batch_index(len(boxes))
    rois = torch.from_numpy(np.concatenate([bi[:, None], boxes], 1).astype(F32))
    for ratio, (oh, ow) in [(1, (3, 3)), (2, (7, 7)), (3, (2, 5))]:
      theirs = torchvision.ops.roi_align(nchw, rois, (oh, ow), SCALE, ratio, aligned)
      compiled = torch.ops.torchvision.roi_align(nchw, rois, SCALE, oh, ow, ratio, aligned)
      assert torch.equal(theirs, compiled)  # the compiled kernel, not the Python fallback
      theirs = theirs.numpy().transpose(0, 2, 3, 1)
      ours = np.asarray(roi_align(feats, boxes.astype(F32), bi, (oh, ow), SCALE, ratio, aligned))
      worst[name] = max(worst.get(name, 0.0), float(np.abs(ours - theirs).max()))
  print(
    f"\ntorchvision {torchvision.__version__} compiled roi_align, aligned={aligned}, "
    f"max |ours - kernel| per case: {worst}"
  )
  assert max(worst.values()) <= 1e-5, worst


def test_assign_levels_by_hand():
  sizes = np.array([10.0, 111.0, 112.0, 224.0, 447.0, 448.0, 5000.0, 0.0], F32)
  boxes = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], 1)
  # floor(4 + log2(s / 224)) clamped to [2, 5], minus 2
  np.testing.assert_array_equal(np.asarray(levels(boxes, 2, 5)), [0, 0, 1, 2, 2, 3, 3, 0])
  rect = np.array([[0.0, 0.0, 448.0, 112.0]], F32)  # sqrt(area) = 224
  assert int(levels(rect, 2, 5)[0]) == 2


def test_multilevel_equals_per_level_select():
  rng = np.random.default_rng(2)
  strides = (4, 8, 16, 32)
  img_h, img_w = 96, 160
  feats = [rng.standard_normal((2, img_h // s, img_w // s, 4)).astype(F32) for s in strides]
  xy = rng.uniform(-10, 150, (12, 2))
  wh = np.array([6, 20, 40, 90, 130, 170, 250, 300, 600, 12, 60, 100], float)[:, None] * [1.0, 0.8]
  boxes = np.concatenate([xy, xy + wh], 1).astype(F32)
  bi = _batch_index(len(boxes))
  ours = np.asarray(multilevel_roi_align(feats, strides, boxes, bi, (7, 7), 2))
  level = np.asarray(levels(boxes, 2, 5))
  assert set(level.tolist()) == {0, 1, 2, 3}  # every level is exercised
  expected = np.concatenate(
    [
      _reference(feats[lv], boxes[k : k + 1], bi[k : k + 1], 7, 7, 1 / strides[lv], 2, True)
      for k, lv in enumerate(level)
    ]
  )
  np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
  with pytest.raises(ValueError, match="powers of two"):
    ops.multilevel_roi_align(feats, (4, 8, 12, 32), boxes, bi, 7)
  with pytest.raises(ValueError, match="one stride per"):
    ops.multilevel_roi_align(feats, (4, 8, 16), boxes, bi, 7)


def test_evad_sized_vmap_grad_dtype_and_errors():
  rng = np.random.default_rng(3)
  t, c, k = 2, 8, 100  # EVAD pools the same boxes on every temporal slice of an 18×32 grid
  feats = jnp.asarray(rng.standard_normal((t, 2, 18, 32, c)), jnp.float32)
  xy = rng.uniform(0, 400, (k, 2))
  boxes = jnp.asarray(np.concatenate([xy, xy + rng.uniform(8, 200, (k, 2))], 1), jnp.float32)
  bi = jnp.asarray(np.arange(k) % 2)
  pool = jax.jit(jax.vmap(lambda f: ops.roi_align(f, boxes, bi, 7, 1 / 16)))
  out = pool(feats)
  assert out.shape == (t, k, 7, 7, c)
  np.testing.assert_allclose(out[1], roi_align(feats[1], boxes, bi, 7, 1 / 16), atol=1e-5)
  inside = jnp.asarray([[20.0, 30.0, 200.0, 250.0], [300.0, 10.0, 500.0, 100.0]])
  grad = jax.jit(jax.grad(lambda f: ops.roi_align(f, inside, bi[:2], 2, 1 / 16).sum()))(feats[0])
  # each output is a convex combination of map values: the gradient sums to 2 boxes·4 bins·C
  assert grad.shape == feats[0].shape and float(grad.sum()) == pytest.approx(2 * 4 * c, rel=1e-5)
  half = roi_align(feats[0].astype(jnp.bfloat16), boxes[:2], bi[:2], 3, 1 / 16)
  assert half.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="sampling_ratio"):
    ops.roi_align(feats[0], boxes, bi, 7, 1 / 16, sampling_ratio=0)
  with pytest.raises(ValueError, match=r"boxes must be \[K, 4\]"):
    ops.roi_align(feats[0], boxes[:, :3], bi, 7, 1 / 16)
  with pytest.raises(ValueError, match="batch_index"):
    ops.roi_align(feats[0], boxes, bi[:5], 7, 1 / 16)
  with pytest.raises(ValueError, match="features must be"):
    ops.roi_align(feats, boxes, bi, 7, 1 / 16)
  with pytest.raises(ValueError, match="output_size"):
    ops.roi_align(feats[0], boxes, bi, (7, 0), 1 / 16)
