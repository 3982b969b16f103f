"""VideoViT / VideoMAE / VideoClassifier: structure, numerics against numpy, sizes, dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgvm import masking, models
from mgvm.models import vit
from mgvm.train import losses

TINY = dict(size=None, dim=24, depth=2, num_heads=2)


def _count_params(make):
  state = nnx.state(nnx.eval_shape(make), nnx.Param)
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(state))


def test_sinusoid_table_is_the_interleaved_1d_reference_table():
  table = models.sinusoid_table(7, 6)
  assert table.shape == (7, 6) and table.dtype == np.float32
  np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1])
  for p in range(7):
    for j in range(6):
      angle = p / 10000 ** (2 * (j // 2) / 6)
      want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
      assert table[p, j] == pytest.approx(want, abs=1e-6)


def test_tubelet_embedding_token_order_and_value():
  enc = models.VideoViT(**TINY, num_frames=4, image_size=(32, 48), rngs=nnx.Rngs(0))
  assert enc.grid == (2, 2, 3)
  video = jax.random.normal(jax.random.key(1), (1, 4, 32, 48, 3))
  base = np.asarray(enc.embed(video))
  assert base.shape == (1, 12, 24)
  # A pixel at frame 3, row 20, column 40 lies in tubelet (1, 1, 2) -> token 1*6 + 1*3 + 2 = 11.
  bumped = np.asarray(enc.embed(video.at[0, 3, 20, 40, 1].add(5.0)))
  changed = np.nonzero(np.any(bumped != base, axis=-1)[0])[0]
  np.testing.assert_array_equal(changed, [11])
  # Each token is the conv kernel applied to its tubelet's pixels (pixel-major, channel-minor).
  kernel = np.asarray(enc.patch_embed.proj.kernel[...]).reshape(-1, 24)
  bias = np.asarray(enc.patch_embed.proj.bias[...])
  patches = np.asarray(losses.patchify(video, enc.tubelet)).reshape(1, 12, -1)
  np.testing.assert_allclose(base, patches @ kernel + bias, atol=1e-4)


def _attention_numpy(x, attn):
  p = lambda v: np.asarray(v[...], np.float64)
  d = x.shape[-1]
  qkv = x @ p(attn.qkv.kernel)
  q, k, v = qkv[..., :d] + p(attn.q_bias), qkv[..., d : 2 * d], qkv[..., 2 * d :] + p(attn.v_bias)
  h, dh = attn.num_heads, d // attn.num_heads
  split = lambda t: t.reshape(t.shape[0], t.shape[1], h, dh).transpose(0, 2, 1, 3)
  logits = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(dh)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = (probs @ split(v)).transpose(0, 2, 1, 3).reshape(x.shape)
  return out @ p(attn.proj.kernel) + p(attn.proj.bias)


def test_attention_matches_numpy_with_learned_q_v_bias_and_zero_k_bias():
  attn = vit.Attention(12, 3, rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(2), 3)
  attn.q_bias[...] = jax.random.normal(keys[0], (12,))
  attn.v_bias[...] = jax.random.normal(keys[1], (12,))
  x = np.asarray(jax.random.normal(keys[2], (2, 5, 12)), np.float64)
  np.testing.assert_allclose(
    attn(jnp.asarray(x, jnp.float32)), _attention_numpy(x, attn), atol=2e-5
  )
  no_bias = vit.Attention(12, 3, qkv_bias=False, rngs=nnx.Rngs(0))
  assert no_bias.q_bias is None and no_bias.v_bias is None


def test_block_is_pre_ln_with_exact_gelu_and_layer_scale():
  block = vit.Block(8, 2, layer_scale_init=0.1, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(block.gamma_1[...], 0.1)
  x = np.asarray(jax.random.normal(jax.random.key(3), (1, 4, 8)), np.float64)

  def ln(t, norm):
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    return (t - mu) / np.sqrt(var + 1e-6) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])

  from scipy.special import erf

  gelu = lambda t: 0.5 * t * (1 + erf(t / math.sqrt(2)))
  y = x + 0.1 * _attention_numpy(ln(x, block.norm1), block.attn)
  hidden = gelu(
    ln(y, block.norm2) @ np.asarray(block.mlp.fc1.kernel[...]) + np.asarray(block.mlp.fc1.bias[...])
  )
  want = y + 0.1 * (
    hidden @ np.asarray(block.mlp.fc2.kernel[...]) + np.asarray(block.mlp.fc2.bias[...])
  )
  np.testing.assert_allclose(block(jnp.asarray(x, jnp.float32)), want, atol=5e-5)


def test_encoder_on_kept_tokens_ignores_dropped_content():
  enc = models.VideoViT(**TINY, num_frames=4, image_size=32, rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(4), (2, 4, 32, 32, 3))
  ids_keep = jnp.array([[0, 2, 5, 7], [1, 3, 4, 6]], jnp.int32)
  encode = nnx.jit(lambda m, v, ids: m(v, ids))
  out = encode(enc, video, ids_keep)
  assert out.shape == (2, 4, 24)
  # Token 1 of sample 0 (frames 0-1, rows 0-15, columns 16-31) is dropped: changing it is invisible.
  altered = video.at[0, 0:2, 0:16, 16:32].set(9.0)
  np.testing.assert_allclose(encode(enc, altered, ids_keep), out, atol=1e-6)
  # ...whereas changing a kept token (token 0) changes the output.
  assert not np.allclose(encode(enc, video.at[0, 0, 0, 0].add(3.0), ids_keep)[0], out[0])
  # Positions are added before the gather: kept tokens see their own position.
  full = encode(enc, video, None)
  assert full.shape == (2, 8, 24)


def test_named_sizes_parameter_counts_and_decoder_depths():
  # ViT-B encoder, by hand: patch embed 3*2*16*16*768 + 768; per block qkv 768*2304 + q/v bias
  # 2*768 + proj 768*768+768 + 2 LayerNorms 4*768 + fc1 768*3072+3072 + fc2 3072*768+768.
  block = 768 * 2304 + 2 * 768 + 768 * 768 + 768 + 4 * 768 + 768 * 3072 + 3072 + 3072 * 768 + 768
  encoder_b = 3 * 2 * 16 * 16 * 768 + 768 + 12 * block + 2 * 768
  assert encoder_b == 86_227_200
  assert _count_params(lambda: models.VideoViT("B", rngs=nnx.Rngs(0))) == encoder_b
  # The Kinetics-400 classifier (HF reports 86.5M): no final norm, fc_norm + 400-way head.
  clf = _count_params(lambda: models.VideoClassifier("B", num_classes=400, rngs=nnx.Rngs(0)))
  assert clf == encoder_b + 768 * 400 + 400
  # Decoder depth 4 for S/B and 12 for L/H (the official scripts); L/H checked on the spec
  # (building them, even abstractly, costs tens of seconds on 2 cores).
  assert [vit.resolve_size(s).decoder_depth for s in "SBLH"] == [4, 4, 12, 12]
  assert [(vit.resolve_size(s).dim, vit.resolve_size(s).decoder_heads) for s in "LH"] == [
    (1024, 8),
    (1280, 8),
  ]
  for size, depth in (("S", 4), ("B", 4)):
    mae = nnx.eval_shape(lambda: models.VideoMAE(size, rngs=nnx.Rngs(0)))
    spec = models.SIZES[size]
    assert len(mae.decoder.blocks) == depth and len(mae.encoder.blocks) == spec.depth
    assert mae.encoder_to_decoder.kernel.shape == (spec.dim, spec.decoder_dim)
    assert mae.decoder.head.kernel.shape == (spec.decoder_dim, 1536)
    assert mae.decoder.blocks[0].attn.num_heads == spec.decoder_heads


def test_size_errors_are_clear():
  with pytest.raises(ValueError, match="Unknown model size 'XL'"):
    models.VideoViT("XL", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="needs depth, num_heads"):
    models.VideoViT(None, dim=64, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="dim=50 is not divisible by its number of heads 4"):
    models.VideoViT(None, dim=50, depth=1, num_heads=4, rngs=nnx.Rngs(0))
  with pytest.raises(
    ValueError, match=r"num_frames=5 is not a positive multiple of the tubelet \(2, 16, 16\)"
  ):
    models.VideoViT(**TINY, num_frames=5, image_size=32, rngs=nnx.Rngs(0))
  enc = models.VideoViT(**TINY, num_frames=4, image_size=32, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"height=40 is not a positive multiple"):
    enc.embed(jnp.zeros((1, 4, 40, 32, 3)))


def test_other_clip_sizes_build_the_table_for_the_actual_grid():
  enc = models.VideoViT(**TINY, num_frames=16, image_size=224, rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, v: m(v))(enc, jnp.zeros((1, 6, 48, 32, 3)))
  assert out.shape == (1, 3 * 3 * 2, 24)


def _tiny_mae(**kw):
  return models.VideoMAE(
    **TINY,
    decoder_dim=16,
    decoder_heads=2,
    decoder_depth=1,
    num_frames=4,
    image_size=32,
    rngs=nnx.Rngs(0),
    **kw,
  )


def test_mae_predicts_ids_target_rows_and_trains_through_the_loss():
  mae = _tiny_mae()
  masker = masking.build({"kind": "tube", "ratio": 0.5}, mae.grid)
  video = jax.random.normal(jax.random.key(5), (2, 4, 32, 32, 3))
  m = masker(jax.random.key(6), video, None)

  @nnx.jit
  def loss_and_grads(model, v, m):
    def loss_fn(model):
      pred, _ = model(v, m)
      return losses.mae_loss(v, pred, m, model.tubelet)

    return nnx.value_and_grad(loss_fn)(model)

  pred, aux = nnx.jit(lambda model, v, m: model(v, m))(mae, video, m)
  assert pred.shape == (2, 4, 3 * 2 * 16 * 16) and pred.dtype == jnp.float32
  assert aux["encoded"].shape == (2, 4, 24)
  loss, grads = loss_and_grads(mae, video, m)
  assert np.isfinite(loss)
  # Every parameter, the mask token and both q/v biases included, receives a gradient.
  for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads, nnx.Param)):
    assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)


def test_mae_decoder_sees_mask_tokens_at_the_target_positions():
  mae = _tiny_mae()
  video = jax.random.normal(jax.random.key(7), (1, 4, 32, 32, 3))
  call = nnx.jit(lambda model, v, m: model(v, m)[0])
  m1 = masking.from_boolean_mask(np.array([[0, 1, 1, 0, 1, 0, 1, 1]], bool))
  m2 = masking.from_boolean_mask(np.array([[0, 1, 1, 0, 1, 1, 1, 0]], bool))
  # Same visible set, different targets: predictions differ (positions enter the decoder).
  assert not np.allclose(call(mae, video, m1), call(mae, video, m2))
  # Changing the mask token changes every prediction.
  before = call(mae, video, m1)
  mae.mask_token[...] = mae.mask_token[...] + 1.0
  assert not np.allclose(call(mae, video, m1), before)


def test_classifier_head_init_scale_pooling_and_token_compression():
  clf = models.VideoClassifier(**TINY, num_classes=5, num_frames=4, image_size=32, rngs=nnx.Rngs(0))
  assert float(jnp.std(clf.head.kernel[...])) < 0.02 * 0.001 * 1.5
  np.testing.assert_array_equal(clf.head.bias[...], 0)
  assert clf.encoder.norm is None
  video = jax.random.normal(jax.random.key(8), (2, 4, 32, 32, 3))
  call = nnx.jit(lambda m, v, ids: m(v, ids_keep=ids))
  logits, aux = call(clf, video, None)
  assert logits.shape == (2, 5)
  all_ids = jnp.tile(jnp.arange(8, dtype=jnp.int32), (2, 1))
  np.testing.assert_allclose(call(clf, video, all_ids)[0], logits, atol=1e-6)
  some = call(clf, video, all_ids[:, :4])[0]
  assert some.shape == (2, 5) and not np.allclose(some, logits)
  with pytest.raises(ValueError, match="num_classes must be >= 1"):
    models.VideoClassifier(**TINY, num_classes=0, rngs=nnx.Rngs(0))


def test_drop_path_and_dropout_are_stochastic_only_in_training():
  clf = models.VideoClassifier(
    **TINY,
    num_classes=3,
    num_frames=4,
    image_size=32,
    drop_path_rate=0.5,
    fc_drop_rate=0.5,
    rngs=nnx.Rngs(0),
  )
  rates = [b.drop_path.rate for b in clf.encoder.blocks]
  assert rates == [0.0, 0.5]  # linear schedule from 0
  video = jax.random.normal(jax.random.key(9), (4, 4, 32, 32, 3))
  train = nnx.jit(lambda m, v, key: m(v, deterministic=False, rngs=nnx.Rngs(dropout=key))[0])
  evaluate = nnx.jit(lambda m, v: m(v)[0])
  a, b = train(clf, video, jax.random.key(0)), train(clf, video, jax.random.key(1))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(train(clf, video, jax.random.key(0)), a)
  np.testing.assert_array_equal(evaluate(clf, video), evaluate(clf, video))
  with pytest.raises(ValueError, match="needs rngs"):
    clf(video, deterministic=False)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32():
  video = jax.random.normal(jax.random.key(10), (1, 4, 32, 32, 3))
  f32 = _tiny_mae()
  bf16 = _tiny_mae(dtype=jnp.bfloat16)
  dtypes = {x.dtype for x in jax.tree_util.tree_leaves(nnx.state(bf16, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert bf16.encoder.embed(video).dtype == jnp.bfloat16
  m = masking.from_boolean_mask(np.array([[0, 1, 1, 0, 1, 0, 1, 1]], bool))
  call = nnx.jit(lambda model, v, m: model(v, m)[0])
  p32, p16 = call(f32, video, m), call(bf16, video, m)
  assert p16.dtype == jnp.float32
  rel = float(jnp.linalg.norm(p16 - p32) / jnp.linalg.norm(p32))
  assert 0 < rel < 0.05
