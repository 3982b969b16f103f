"""Normalized-pixel targets and the MAE loss, pinned on tiny hand-computed arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm.masking import MaskOut
from mgvm.train import losses


def _mask_out(ids_keep, ids_target, n):
  ids_keep, ids_target = np.asarray(ids_keep, np.int32), np.asarray(ids_target, np.int32)
  mask = np.ones((ids_keep.shape[0], n), bool)
  np.put_along_axis(mask, ids_keep, False, axis=1)
  return MaskOut(jnp.asarray(ids_keep), jnp.asarray(ids_target), jnp.asarray(mask))


def test_patchify_token_and_pixel_order():
  # video [1, T=2, H=2, W=4, C=1] with value = 100*t + 10*y + x; tubelet (2, 1, 2).
  t, y, x = np.meshgrid(np.arange(2), np.arange(2), np.arange(4), indexing="ij")
  video = jnp.asarray((100 * t + 10 * y + x)[None, ..., None], jnp.float32)
  p = losses.patchify(video, (2, 1, 2))
  assert p.shape == (1, 4, 4, 1)  # grid (1, 2, 2): 4 tokens of 2*1*2 pixels
  # token n = i*w + j (row i, column block j); pixels ordered (pt, ph, pw).
  np.testing.assert_array_equal(p[0, 0, :, 0], [0, 1, 100, 101])
  np.testing.assert_array_equal(p[0, 1, :, 0], [2, 3, 102, 103])
  np.testing.assert_array_equal(p[0, 2, :, 0], [10, 11, 110, 111])
  np.testing.assert_array_equal(p[0, 3, :, 0], [12, 13, 112, 113])
  # unpatchify inverts it.
  back = losses.unpatchify(p.reshape(1, 4, -1), (1, 2, 2), (2, 1, 2))
  np.testing.assert_array_equal(back, video)


def test_raw_targets_unnormalize_with_imagenet_stats_and_channel_minor_layout():
  # One token of 2 pixels (tubelet (1, 1, 2)); normalized input value v -> v*std + mean.
  v = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]], np.float32)  # [pixel, channel]
  video = jnp.asarray(v.reshape(1, 1, 1, 2, 3))
  got = np.asarray(losses.pixel_targets(video, (1, 1, 2), normalize=False))[0, 0]
  mean, std = losses.IMAGENET_MEAN, losses.IMAGENET_STD
  want = [
    mean[0],
    mean[1],
    mean[2],  # pixel 0, channels r g b
    mean[0] + std[0],
    mean[1] - std[1],
    mean[2] + 2 * std[2],
  ]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_normalized_target_unbiased_variance_per_channel_eps_after_sqrt():
  # Pixel units (mean/std None). Two pixels per tubelet, three channels:
  #   r: 0.2, 0.6   -> mean 0.4, unbiased var 0.08, value (0.2-0.4)/(sqrt(0.08)+1e-6)
  #   g: 0.5, 0.5   -> zero deviation -> exactly 0
  #   b: 0.25, 0.25 + 2^-19 (exact in float32) -> deviation d = 2^-20, std sqrt(2)·d ~ 1.3e-6
  #      is comparable to eps: value -d / (sqrt(2)·d + 1e-6) pins eps *after* the sqrt
  d = 2.0**-20
  pix = np.array([[0.2, 0.5, 0.25], [0.6, 0.5, 0.25 + 2 * d]], np.float64)
  video = jnp.asarray(pix.reshape(1, 1, 1, 2, 3), jnp.float32)
  got = np.asarray(losses.pixel_targets(video, (1, 1, 2), mean=None, std=None))[0, 0]
  r = -0.2 / (math.sqrt(0.08) + 1e-6)
  b0 = -d / (math.sqrt(2) * d + 1e-6)
  want = [r, 0.0, b0, -r, 0.0, -b0]  # pixel-major, channel-minor
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
  # The biased variance would give -1 for r, and eps inside the sqrt would give ~0 for b.
  assert abs(got[0] + 1.0) > 0.25 and abs(got[2]) > 0.3


def test_targets_are_invariant_to_the_input_normalization_per_channel():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(0, 1, (2, 4, 8, 8, 3)).astype(np.float32)
  mean, std = np.array(losses.IMAGENET_MEAN), np.array(losses.IMAGENET_STD)
  normalized = (pixels - mean) / std
  a = losses.pixel_targets(jnp.asarray(normalized), (2, 4, 4))
  b = losses.pixel_targets(jnp.asarray(pixels), (2, 4, 4), mean=None, std=None)
  np.testing.assert_allclose(a, b, atol=2e-4)
  # And each (token, channel) has zero mean and unit unbiased std (up to eps).
  t = np.asarray(a).reshape(2, 2 * 2 * 2, 32, 3)
  np.testing.assert_allclose(t.mean(axis=2), 0, atol=1e-5)
  np.testing.assert_allclose(t.std(axis=2, ddof=1), 1, atol=1e-3)


def test_mae_loss_is_mse_over_target_tokens_in_ascending_order():
  rng = np.random.default_rng(1)
  video = jnp.asarray(rng.normal(size=(2, 2, 4, 4, 3)), jnp.float32)  # tubelet (2,2,2): 4 tokens
  m = _mask_out([[1], [3]], [[0, 2, 3], [0, 1, 2]], 4)
  targets = np.asarray(losses.pixel_targets(video, (2, 2, 2)))
  pred = rng.normal(size=(2, 3, 24)).astype(np.float32)
  got = float(losses.mae_loss(video, jnp.asarray(pred), m, (2, 2, 2)))
  want = np.mean(
    [
      (pred[b, r] - targets[b, t]) ** 2
      for b, row in enumerate([[0, 2, 3], [0, 1, 2]])
      for r, t in enumerate(row)
    ]
  )
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Zero predictions on 8-pixel tubelets: mean square of a unit-std (ddof 1) sample is 7/8.
  zero = float(losses.mae_loss(video, jnp.zeros((2, 3, 24)), m, (2, 2, 2)))
  np.testing.assert_allclose(zero, 7 / 8, rtol=1e-4)


def test_mae_loss_ignores_decoded_tokens_that_the_encoder_saw():
  # Running-cell decoding: token 1 of sample 0 is decoded but visible -> weight 0.
  rng = np.random.default_rng(2)
  video = jnp.asarray(rng.normal(size=(1, 2, 4, 4, 3)), jnp.float32)
  m = _mask_out([[1]], [[1, 2]], 4)
  targets = np.asarray(losses.pixel_targets(video, (2, 2, 2)))
  pred = rng.normal(size=(1, 2, 24)).astype(np.float32)
  got = float(losses.mae_loss(video, jnp.asarray(pred), m, (2, 2, 2)))
  np.testing.assert_allclose(got, np.mean((pred[0, 1] - targets[0, 2]) ** 2), rtol=1e-6)


def test_targets_carry_no_gradient_and_shape_errors_are_clear():
  rng = np.random.default_rng(3)
  video = jnp.asarray(rng.normal(size=(1, 2, 4, 4, 3)), jnp.float32)
  m = _mask_out([[0]], [[1, 2, 3]], 4)
  pred = jnp.asarray(rng.normal(size=(1, 3, 24)), jnp.float32)
  g_video = jax.grad(lambda v: losses.mae_loss(v, pred, m, (2, 2, 2)))(video)
  assert not np.any(np.asarray(g_video))
  g_pred = jax.grad(lambda p: losses.mae_loss(video, p, m, (2, 2, 2)))(pred)
  assert np.all(np.asarray(g_pred) != 0)
  with pytest.raises(
    ValueError, match=r"predictions \(1, 3, 12\) do not match targets \(1, 3, 24\)"
  ):
    losses.mae_loss(video, pred[..., :12], m, (2, 2, 2))
  with pytest.raises(ValueError, match="not divisible by the tubelet"):
    losses.patchify(jnp.zeros((1, 3, 4, 4, 3)), (2, 2, 2))
