"""mgvm.flow: pyramidal Lucas–Kanade on translating textured squares, warping, jit/sharding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from benchmarks import flow_epe
from mgvm import flow

estimate = jax.jit(flow.estimate)


@functools.lru_cache(maxsize=None)
def _squares():
  """Batch of 8: the four benchmark cases × seeds 0, 1 → (a, b, truth, interior)."""
  pairs = [
    flow_epe.translating_square(seed, d, textured_background=textured)
    for _, d, textured in flow_epe.CASES
    for seed in (0, 1)
  ]
  return tuple(np.stack(p) for p in zip(*pairs))


@functools.lru_cache(maxsize=None)
def _estimated():
  a, b, _, _ = _squares()
  return np.asarray(estimate(a, b))


def test_translating_square_epe():
  _, _, truth, interior = _squares()
  fl = _estimated()
  assert fl.shape == truth.shape and fl.dtype == np.float32
  for i, (name, d, _) in enumerate(flow_epe.CASES):
    s = slice(2 * i, 2 * i + 2)
    ours = flow_epe.epe(fl[s], truth[s], interior[s])
    zero = flow_epe.epe(np.zeros_like(truth[s]), truth[s], interior[s])
    limit = 0.5 if max(map(abs, d)) < 3 else 1.0
    assert ours < limit and ours < 0.1 * zero, (name, ours, zero)


def test_zero_motion_gives_zero_flow():
  a = _squares()[0]
  fl = np.asarray(estimate(a, a))
  assert np.abs(fl).max() < 1e-4


def test_warp_of_b_by_estimate_matches_a():
  a, b, _, interior = _squares()
  back = np.asarray(flow.warp(jnp.asarray(b), jnp.asarray(_estimated())))
  err = np.abs(back - a).mean(-1)[interior].mean()
  zero = np.abs(b - a).mean(-1)[interior].mean()
  assert err < 0.1 * zero, (err, zero)


def test_warp_by_integer_flow_is_a_shift_with_zeros_entering():
  rng = np.random.default_rng(0)
  image = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  fl = np.zeros((2, 9, 11, 2), np.float32)
  fl[0] = (2, -1)  # out(y, x) = image(y - 1, x + 2)
  fl[1] = (-3, 4)
  out = np.asarray(flow.warp(jnp.asarray(image), jnp.asarray(fl)))
  want = np.zeros_like(image)
  want[0, 1:, :-2] = image[0, :-1, 2:]
  want[1, :-4, 3:] = image[1, 4:, :-3]
  np.testing.assert_array_equal(out, want)
  # A fractional flow: bilinear with zero outside, as map_coordinates(order=1, mode="constant").
  frac = jnp.asarray(rng.uniform(-3, 3, size=(2, 9, 11, 2)).astype(np.float32))
  got = np.asarray(flow.warp(jnp.asarray(image), frac))
  ys, xs = np.mgrid[0:9, 0:11]

  def ref(img, f):  # one channel [H, W], flow [H, W, 2]
    return jax.scipy.ndimage.map_coordinates(
      img, [ys + f[..., 1], xs + f[..., 0]], order=1, mode="constant", cval=0.0
    )

  want = jax.vmap(jax.vmap(ref, (2, None), 2))(jnp.asarray(image), frac)
  np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)


def test_jit_traces_once_and_sharded_batch_matches_unsharded():
  traces = []

  def fn(a, b):
    traces.append(1)
    return flow.estimate(a, b)

  jitted = jax.jit(fn)
  a, b, _, _ = _squares()
  mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
  spec = NamedSharding(mesh, PartitionSpec("data"))
  sharded = jitted(jax.device_put(a, spec), jax.device_put(b, spec))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(sharded), _estimated(), atol=1e-5)
  jitted(jax.device_put(b, spec), jax.device_put(a, spec)).block_until_ready()
  assert len(traces) == 1
  # Batch independence: each sample's flow does not depend on the others (order reversed).
  rev = np.asarray(estimate(a[::-1], b[::-1]))
  np.testing.assert_allclose(rev[::-1], _estimated(), atol=1e-5)


def test_scale_and_intensity_scale():
  a, b, truth, interior = _squares()
  s = slice(4, 6)  # (6, 3) over a textured background
  half = np.asarray(jax.jit(functools.partial(flow.estimate, scale=0.5))(a[s], b[s]))
  assert half.shape == truth[s].shape
  assert flow_epe.epe(half, truth[s], interior[s]) < 1.5
  # Any intensity scale: grey is standardised per sample.
  scaled = np.asarray(estimate(a * 57.0 + 100.0, b * 57.0 + 100.0))
  np.testing.assert_allclose(scaled, _estimated(), atol=2e-3)


def test_against_opencv_farneback():
  pytest.importorskip("cv2")
  a, b, truth, interior = _squares()
  ours = flow_epe.epe(_estimated(), truth, interior)
  fb = np.stack([flow_epe.farneback(a[i], b[i]) for i in range(len(a))])
  theirs = flow_epe.epe(fb, truth, interior)
  print(f"EPE on the translating squares: ours {ours:.3f} px, Farnebäck {theirs:.3f} px")
  assert ours <= 2 * theirs + 0.2
  # Farnebäck agrees with our convention: on the small motion it beats zero flow by far.
  s = slice(0, 2)
  assert flow_epe.epe(fb[s], truth[s], interior[s]) < 0.5
