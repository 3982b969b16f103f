"""Mixup / CutMix (timm batch mode), label smoothing, soft cross entropy."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgvm.train import mixup


def _video(b=2, t=3, h=8, w=8, c=2):
  # Sample i is the constant i + 1 plus a small per-frame offset, so every pasted pixel changes.
  base = jnp.arange(1, b + 1, dtype=jnp.float32)[:, None, None, None, None]
  frame = 0.01 * jnp.arange(t, dtype=jnp.float32)[None, :, None, None, None]
  return jnp.broadcast_to(base + frame, (b, t, h, w, c))


def test_smooth_one_hot():
  got = mixup.smooth_one_hot(jnp.array([2, 0]), 4, 0.1)
  np.testing.assert_allclose(
    np.asarray(got), [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]], rtol=1e-6
  )
  np.testing.assert_allclose(np.asarray(mixup.smooth_one_hot(jnp.array([1]), 3, 0.0)), [[0, 1, 0]])
  with pytest.raises(ValueError, match="smoothing"):
    mixup.smooth_one_hot(jnp.array([1]), 3, 1.0)


def test_soft_cross_entropy():
  logits = jnp.array([[0.0, math.log(3.0)], [2.0, 2.0]])
  targets = jnp.array([[0.5, 0.5], [1.0, 0.0]])
  # Row 0: p = (1/4, 3/4) -> -(0.5 log 1/4 + 0.5 log 3/4); row 1: -log 1/2.
  expect = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2.0)) / 2
  np.testing.assert_allclose(float(mixup.soft_cross_entropy(logits, targets)), expect, rtol=1e-6)
  np.testing.assert_allclose(
    float(mixup.soft_cross_entropy(logits, targets)),
    float(optax.softmax_cross_entropy(logits, targets).mean()),
    rtol=1e-6,
  )


def test_apply_mixup_exact():
  video = _video(b=3)
  targets = jnp.eye(3)
  out, t = mixup.apply_mixup(video, targets, 0.25)
  np.testing.assert_allclose(
    np.asarray(out[0]), np.asarray(0.25 * video[0] + 0.75 * video[2]), rtol=1e-6
  )
  np.testing.assert_allclose(np.asarray(out[1]), np.asarray(video[1]), rtol=1e-6)  # middle
  np.testing.assert_allclose(np.asarray(t), [[0.25, 0, 0.75], [0, 1, 0], [0.75, 0, 0.25]])


def test_apply_cutmix_exact():
  video = _video(b=2, h=4, w=4, c=1)
  targets = jnp.eye(2)
  box = (1, 3, 0, 2)  # rows 1-2, columns 0-1: 4 of 16 pixels -> lam 0.75
  out, t = mixup.apply_cutmix(video, targets, box)
  expect = np.array(video)
  expect[:, :, 1:3, 0:2] = np.array(video)[::-1, :, 1:3, 0:2]
  np.testing.assert_array_equal(np.asarray(out), expect)
  np.testing.assert_allclose(np.asarray(t), [[0.75, 0.25], [0.25, 0.75]])
  assert float(mixup.box_lam(box, 4, 4)) == 0.75


def test_rand_box_rule():
  h, w = 10, 13
  boxes = jax.jit(jax.vmap(lambda k, lam: jnp.stack(mixup.rand_box(k, lam, h, w))))
  for seed, lam in enumerate([0.1, 0.5, 0.9, 0.99, 1.0]):
    keys = jax.random.split(jax.random.key(seed), 20)
    for box in np.asarray(boxes(keys, jnp.full((20,), lam))):
      y_lo, y_hi, x_lo, x_hi = (int(v) for v in box)
      cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
      assert 0 <= y_lo <= y_hi <= h and 0 <= x_lo <= x_hi <= w
      assert y_hi - y_lo <= 2 * (cut_h // 2) and x_hi - x_lo <= 2 * (cut_w // 2)
      if y_lo > 0 and y_hi < h:  # not clipped: exactly centre -/+ cut // 2
        assert y_hi - y_lo == 2 * (cut_h // 2)
      if lam == 1.0:
        assert (y_hi - y_lo) * (x_hi - x_lo) == 0


def test_cutmix_same_box_all_frames_and_lam_correction():
  video = _video(b=4, t=5, h=16, w=16, c=3)
  targets = mixup.smooth_one_hot(jnp.arange(4), 4, 0.0)
  run = jax.jit(functools.partial(mixup.mixup_cutmix, mixup_alpha=0.0, cutmix_alpha=1.0))
  for k in jax.random.split(jax.random.key(0), 10):
    out, t = run(k, video, targets)
    changed = np.asarray(out != video)  # [B, T, H, W, C]
    box = changed[0, 0, :, :, 0]
    assert (changed == box[None, None, :, :, None]).all()  # one box: all samples/frames/channels
    lam = 1.0 - box.sum() / box.size
    np.testing.assert_allclose(np.asarray(t[0]), [lam, 0, 0, 1 - lam], rtol=1e-6, atol=1e-7)
    if box.any():  # a rectangle
      rows, cols = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
      assert box.sum() == len(rows) * len(cols)
      assert box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
    np.testing.assert_allclose(np.asarray(t.sum(-1)), 1.0, rtol=1e-6)


def test_mixup_only_exact_and_targets_sum():
  video = _video(b=2)
  targets = mixup.smooth_one_hot(jnp.array([0, 1]), 3, 0.1)
  out, t = jax.jit(functools.partial(mixup.mixup_cutmix, cutmix_alpha=0.0))(
    jax.random.key(3), video, targets
  )
  # Recover lam from sample 0 (value 1 + frame) mixed with sample 1 (value 2 + frame).
  lam = 2.0 - float(out[0, 0, 0, 0, 0])
  np.testing.assert_allclose(
    np.asarray(out), np.asarray(mixup.apply_mixup(video, targets, lam)[0]), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(np.asarray(t.sum(-1)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(t), np.asarray(mixup.apply_mixup(video, targets, lam)[1]), rtol=1e-5, atol=1e-6
  )


def test_identity_cases():
  video, targets = _video(), jnp.eye(2)
  key = jax.random.key(0)
  for kwargs in (dict(mixup_alpha=0.0, cutmix_alpha=0.0), dict(prob=0.0)):
    out, t = mixup.mixup_cutmix(key, video, targets, **kwargs)
    assert out is video and t is targets
  with pytest.raises(ValueError, match="prob"):
    mixup.mixup_cutmix(key, video, targets, prob=1.5)
  with pytest.raises(ValueError, match="targets"):
    mixup.mixup_cutmix(key, video, jnp.eye(3))


def _many(n, **kwargs):
  # Sample 0 is all 0, sample 1 all 1: cutmix leaves only 0/1 values, mixup blends.
  video = jnp.concatenate([jnp.zeros((1, 1, 16, 16, 1)), jnp.ones((1, 1, 16, 16, 1))])
  targets = jnp.eye(2)
  keys = jax.random.split(jax.random.key(42), n)
  out, t = jax.jit(jax.vmap(lambda k: mixup.mixup_cutmix(k, video, targets, **kwargs)))(keys)
  return np.asarray(out), np.asarray(t)


def test_lam_distribution_switch_and_prob():
  # One compiled configuration: prob 0.5, switch 0.5 -> ~1/2 untouched, ~1/4 cutmix, ~1/4 mixup.
  out, t = _many(4000, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.5, switch_prob=0.5)
  np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
  untouched = np.all(t == np.eye(2), axis=(1, 2))
  only_01 = np.all((out == 0) | (out == 1), axis=(1, 2, 3, 4, 5))
  cut = only_01 & ~untouched
  mix = ~only_01
  assert abs(untouched.mean() - 0.5) < 0.04
  assert abs(cut.sum() / (~untouched).sum() - 0.5) < 0.05
  lam = t[mix, 0, 0]
  # Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.0962.
  assert abs(lam.mean() - 0.5) < 0.03
  assert abs(lam.var() - 1 / (4 * 2.6)) < 0.012
  np.testing.assert_allclose(out[mix, 0, 0, 0, 0, 0], 1 - lam, rtol=1e-5, atol=1e-6)
