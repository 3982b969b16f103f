"""Keyframe-centric token pruning: explicit attention, scores by hand, static counts, grid rebuild."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgvm.models import ktp
from mgvm.models.vit import Block, VideoViT


def _vit(depth=3):
  return VideoViT(
    None, dim=16, depth=depth, num_heads=2, num_frames=8, image_size=32, rngs=nnx.Rngs(0)
  )


def test_keyframe_order_and_defaults():
  key, others = ktp.keyframe_order((4, 2, 3))  # keyframe slice 2: tokens 12..17
  np.testing.assert_array_equal(key, np.arange(12, 18))
  np.testing.assert_array_equal(others, np.r_[0:12, 18:24])
  assert ktp.default_prune_blocks(12) == (3, 6, 9)
  assert ktp.default_prune_blocks(24) == (6, 12, 18)
  assert ktp.default_feature_blocks(12) == (2, 5, 8, 11)
  assert ktp.default_feature_blocks(24) == (5, 11, 17, 23)


def test_sequence_lengths_match_the_reference_arithmetic():
  # docs/algorithms.md §4.2: 288x512 input, 8 x 18 x 32 = 4608 tokens, 576 per slice
  rates = {3: 0.7, 6: 0.7, 9: 0.7}
  lengths = ktp.sequence_lengths(4608, 576, 12, rates)
  assert [lengths[i] for i in (3, 6, 9, 11)] == [3226, 2259, 1582, 1582]
  lengths = ktp.sequence_lengths(4608, 576, 12, {3: 0.6, 6: 0.6, 9: 0.6})
  assert [lengths[i] for i in (3, 6, 9)] == [2765, 1659, 996]
  assert ktp.sequence_lengths(64, 16, 2, {0: 1.0}) == [64, 64]
  # never below the keyframe: 64 -> ceil(.6*64) = 39 -> 24 -> 15 < 16 keyframe tokens -> 16
  assert ktp.sequence_lengths(64, 16, 4, {1: 0.6, 2: 0.6, 3: 0.6}) == [64, 39, 24, 16]
  assert ktp.sequence_lengths(64, 16, 2, {0: 0.2}) == [16, 16]
  with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
    ktp.sequence_lengths(64, 16, 2, {1: 0.0})


def test_explicit_attention_equals_the_fused_one():
  block = Block(16, 2, rngs=nnx.Rngs(1))
  block.attn.q_bias[...] = jax.random.normal(jax.random.key(2), (16,))
  block.attn.v_bias[...] = jax.random.normal(jax.random.key(3), (16,))
  x = jax.random.normal(jax.random.key(4), (2, 10, 16))
  out, probs = ktp.attention_with_probs(block.attn, x)
  np.testing.assert_allclose(out, block.attn(x), atol=2e-5)
  assert probs.shape == (2, 2, 10, 10)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_keyframe_scores_by_hand():
  # 1 sample, 1 head, 3 tokens, 1 keyframe token (row/column 0): columns 1 and 2 are scored
  probs = jnp.asarray([[[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]]])
  np.testing.assert_allclose(ktp.keyframe_scores(probs, 1, 1.0), [[0.3, 0.4]], atol=1e-7)
  # EW 4: the keyframe query row counts 4x: ((4*.5+.1+.3)/3, (4*.3+.8+.1)/3)
  np.testing.assert_allclose(ktp.keyframe_scores(probs, 1, 4.0), [[0.8, 0.7]], atol=1e-6)


@pytest.mark.parametrize("ew", [1.0, 4.0])
def test_pruning_block_keeps_keyframe_and_top_scores(ew):
  block = Block(16, 2, rngs=nnx.Rngs(5))
  num_key, n, keep = 4, 12, math.ceil(0.7 * 12)
  x = jax.random.normal(jax.random.key(6), (3, n, 16))
  ids = jnp.broadcast_to(jnp.arange(100, 100 + n - num_key), (3, n - num_key))
  out, kept = ktp.ktp_block(block, x, ids, num_key=num_key, keep=keep, enhanced_weight=ew)
  assert out.shape == (3, keep, 16) and kept.shape == (3, keep - num_key)
  full = block(x)  # per-token MLP: surviving tokens equal the unpruned block's output
  np.testing.assert_allclose(out[:, :num_key], full[:, :num_key], atol=2e-5)
  # independent NumPy scores: mean over heads of the column sums with keyframe rows x ew
  _, probs = ktp.attention_with_probs(block.attn, block.norm1(x))
  p = np.asarray(probs, np.float64)
  p[:, :, :num_key] *= ew
  scores = p.mean(axis=2).mean(axis=1)[:, num_key:]
  want = np.argsort(-scores, axis=1, kind="stable")[:, : keep - num_key]
  np.testing.assert_array_equal(kept, want + 100)
  np.testing.assert_allclose(
    out[:, num_key:],
    np.take_along_axis(np.asarray(full)[:, num_key:], want[..., None], axis=1),
    atol=2e-5,
  )


def test_no_pruning_equals_the_plain_encoder_keyframe_first():
  vit = _vit()
  video = jax.random.normal(jax.random.key(7), (2, 8, 32, 32, 3))
  tokens = vit.embed(video)
  x, ids, maps = ktp.encode_keyframe_first(
    vit, tokens, vit.grid, keep_rates={}, feature_blocks=(2,)
  )
  plain = vit.encode(tokens)
  key, others = ktp.keyframe_order(vit.grid)
  np.testing.assert_allclose(x, plain[:, np.r_[key, others]], atol=3e-5)
  np.testing.assert_array_equal(ids, np.broadcast_to(others, (2, others.size)))
  from mgvm.models.vit import sinusoid_table

  pre = tokens + sinusoid_table(16, 16)[None]
  for block in vit.blocks:  # the maps are taken after block 2, before the final norm
    pre = block(pre)
  np.testing.assert_allclose(maps[0], pre[:, key].reshape(2, 2, 2, 16), atol=3e-5)


def test_pruned_encoder_static_counts_and_valid_ids():
  vit = _vit()
  video = jax.random.normal(jax.random.key(8), (2, 8, 32, 32, 3))
  fn = jax.jit(
    lambda t: ktp.encode_keyframe_first(
      vit, t, vit.grid, keep_rates={0: 0.7, 1: 0.7}, enhanced_weight=4.0
    )
  )
  x, ids, _ = fn(vit.embed(video))
  # 16 tokens, 4 per slice: ceil(.7*16) = 12, ceil(.7*12) = 9
  assert x.shape == (2, 9, 16) and ids.shape == (2, 5)
  _, others = ktp.keyframe_order(vit.grid)
  for row in np.asarray(ids):
    assert len(set(row)) == 5 and set(row) <= set(others)


def test_rebuild_by_index_restores_positions_and_the_official_flag_does_not():
  grid = (4, 2, 2)
  key, others = ktp.keyframe_order(grid)
  kept_ids = np.array([[13, 2, 9, 0, 5]])  # descending-score order, not ascending
  # feature of a token = its original index (+1 so the fill 0 is distinct)
  tokens = np.concatenate([key, kept_ids[0]]).astype(np.float32)[None, :, None] + 1
  fill = jnp.zeros((1,))
  full, positions = ktp.rebuild_grid(jnp.asarray(tokens), jnp.asarray(kept_ids), grid, fill)
  full = np.asarray(full)[0, :, 0]
  kept = set(key) | set(kept_ids[0])
  for j in range(16):
    assert full[j] == (j + 1 if j in kept else 0), j
  np.testing.assert_array_equal(positions[0], np.r_[key, kept_ids[0]])
  wrong, _ = ktp.rebuild_grid(
    jnp.asarray(tokens), jnp.asarray(kept_ids), grid, fill, official_order=True
  )
  wrong = np.asarray(wrong)[0, :, 0]
  assert any(wrong[j] != j + 1 for j in kept_ids[0])  # features land on the wrong cells
  np.testing.assert_array_equal(sorted(wrong[sorted(kept_ids[0])]), sorted(kept_ids[0] + 1))


def test_pruning_down_to_the_keyframe_alone():
  block = Block(16, 2, rngs=nnx.Rngs(9))
  x = jax.random.normal(jax.random.key(10), (2, 8, 16))
  out, ids = ktp.ktp_block(block, x, jnp.broadcast_to(jnp.arange(4), (2, 4)), num_key=4, keep=4)
  assert out.shape == (2, 4, 16) and ids.shape == (2, 0)
  np.testing.assert_allclose(out, block(x)[:, :4], atol=2e-5)
