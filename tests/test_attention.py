"""The attention kernels (`xla`, `einsum`, `cudnn`, `auto`), padding-aware lengths, exact GELU."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import detect, finetune, pretrain
from mgvm import masking, models, tasks, weights
from mgvm.models import vit

CPU_CHOICES = ("xla", "einsum")


def _attention(attention, dim=24, heads=3, seed=0, **kw):
  attn = vit.Attention(dim, heads, attention=attention, rngs=nnx.Rngs(seed), **kw)
  keys = jax.random.split(jax.random.key(seed + 100), 2)
  attn.q_bias[...] = jax.random.normal(keys[0], (dim,))
  attn.v_bias[...] = jax.random.normal(keys[1], (dim,))
  return attn


def _rebuilt(attn, attention):
  """`attn`'s weights in a module running `attention`."""
  other = vit.Attention(attn.qkv.in_features, attn.num_heads, attention=attention, rngs=nnx.Rngs(9))
  nnx.update(other, nnx.state(attn, nnx.Param))
  return other


def test_xla_and_einsum_agree_in_value_and_gradient():
  xla = _attention("xla")
  ein = _rebuilt(xla, "einsum")
  assert (xla.implementation, ein.implementation) == ("xla", "einsum")
  # Logits of several units so the softmax is far from uniform.
  x = 3.0 * jax.random.normal(jax.random.key(1), (2, 13, 24))

  def loss_and_grads(module):
    return nnx.jit(nnx.value_and_grad(lambda m, x: jnp.sum(jnp.sin(m(x)))))(module, x)

  out_x, out_e = xla(x), ein(x)
  assert float(jnp.abs(out_x).max()) > 1.0
  np.testing.assert_allclose(out_e, out_x, rtol=1e-5, atol=2e-6)
  (loss_x, g_x), (loss_e, g_e) = loss_and_grads(xla), loss_and_grads(ein)
  np.testing.assert_allclose(loss_e, loss_x, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g_e), jax.tree_util.tree_leaves(g_x)):
    # Peaked softmax (logits of tens): float32 rounding of a logit moves a gradient by ~1e-5.
    np.testing.assert_allclose(a, b, atol=1e-5 * float(np.abs(b).max()))


@pytest.mark.parametrize("attention", CPU_CHOICES)
def test_kv_lengths_attend_only_to_the_first_tokens(attention):
  attn = _attention(attention)
  x = jax.random.normal(jax.random.key(2), (3, 10, 24))
  lengths = jnp.array([10, 6, 1], jnp.int32)
  # jitted: one program per input shape compiles faster than the ops one by one
  apply = nnx.jit(lambda m, x, kv=None, q=None: m(x, kv_lengths=kv, q_lengths=q))
  out = apply(attn, x, lengths)
  for b, n in enumerate(lengths.tolist()):
    # Attention over only the first n tokens, by slicing: the real queries' outputs agree.
    np.testing.assert_allclose(out[b, :n], apply(attn, x[b : b + 1, :n])[0], rtol=1e-5, atol=2e-6)
  # Padding content is invisible to the real queries.
  noisy = x.at[1, 6:].set(100.0)
  np.testing.assert_allclose(apply(attn, noisy, lengths)[1, :6], out[1, :6], atol=2e-6)
  assert not np.allclose(apply(attn, noisy)[1, :6], out[1, :6], atol=1e-3)
  # q_lengths: padded queries come out as the projection of zeros (the proj bias).
  both = apply(attn, x, lengths, lengths)
  np.testing.assert_allclose(both[1, :6], out[1, :6], atol=2e-6)
  np.testing.assert_allclose(both[1, 6:], jnp.broadcast_to(attn.proj.bias[...], (4, 24)), atol=1e-6)


def test_kv_lengths_through_the_encoder_equal_the_unpadded_encoder():
  enc = models.VideoViT(
    None, dim=24, depth=2, num_heads=2, num_frames=4, image_size=32, rngs=nnx.Rngs(0)
  )
  video = jax.random.normal(jax.random.key(3), (2, 4, 32, 32, 3))
  tokens = nnx.jit(lambda m, v: m.embed(v))(enc, video)
  encode = nnx.jit(lambda m, t, i, kv=None: m.encode(t, i, kv_lengths=kv))
  ids = jnp.array([[0, 2, 5, 7, 1], [1, 3, 4, 6, 0]], jnp.int32)  # sample 1: 4 real + 1 pad
  out = encode(enc, tokens, ids, jnp.array([5, 4], jnp.int32))
  np.testing.assert_allclose(out[1, :4], encode(enc, tokens[1:], ids[1:, :4])[0], atol=1e-5)
  np.testing.assert_allclose(out[0], encode(enc, tokens[:1], ids[:1])[0], atol=1e-5)


def test_auto_resolves_as_documented():
  bf16, f16, f32 = jnp.bfloat16, jnp.float16, jnp.float32
  resolve = vit.resolve_attention
  assert resolve("auto", f32, 64, backend="cpu") == "einsum"
  assert resolve("auto", bf16, 64, backend="cpu") == "einsum"
  assert resolve("auto", bf16, 64, backend="gpu") == "cudnn"
  assert resolve("auto", f16, 128, backend="gpu") == "cudnn"
  assert resolve("auto", f32, 64, backend="gpu") == "einsum"  # cuDNN's flash kernel: half only
  assert resolve("auto", bf16, 12, backend="gpu") == "einsum"  # head dim not a multiple of 8
  assert resolve("auto", bf16, 64, backend="tpu") == "xla"
  assert resolve("xla", f32, 12, backend="gpu") == "xla"
  # Every Attention of a model resolves the same way, the MAE decoder's included.
  mae = nnx.eval_shape(
    lambda: models.VideoMAE(
      None,
      dim=32,
      depth=1,
      num_heads=2,
      decoder_depth=1,
      num_frames=4,
      image_size=32,
      rngs=nnx.Rngs(0),
    )
  )
  found = [n.implementation for _, n in nnx.iter_graph(mae) if isinstance(n, vit.Attention)]
  want = resolve("auto", jnp.float32, 16)
  assert found == [want, want] and want == ("einsum" if jax.default_backend() == "cpu" else want)


def test_unknown_and_impossible_choices_raise_clearly():
  with pytest.raises(
    ValueError, match="Unknown attention 'flash'; known: auto, xla, cudnn, einsum"
  ):
    models.VideoViT(None, dim=24, depth=1, num_heads=2, attention="flash", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="bfloat16 or float16 compute dtype; got float32"):
    vit.Attention(16, 2, attention="cudnn", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="multiple of 8"):
    vit.Attention(24, 2, attention="cudnn", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  if jax.default_backend() != "gpu":
    attn = vit.Attention(32, 2, attention="cudnn", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    with pytest.raises(
      ValueError, match=f"only on NVIDIA GPUs.*backend is '{jax.default_backend()}'"
    ):
      attn(jnp.zeros((1, 4, 32)))


@pytest.mark.gpu
def test_cudnn_agrees_with_xla_in_bfloat16():
  xla = _attention("xla", dim=128, heads=2, dtype=jnp.bfloat16)
  cudnn = vit.Attention(128, 2, attention="cudnn", dtype=jnp.bfloat16, rngs=nnx.Rngs(9))
  nnx.update(cudnn, nnx.state(xla, nnx.Param))
  x = jax.random.normal(jax.random.key(4), (2, 64, 128), jnp.bfloat16)
  lengths = jnp.array([64, 40], jnp.int32)
  for kw in ({}, {"kv_lengths": lengths}):
    a = np.asarray(xla(x, **kw)[:, :40], np.float32)
    b = np.asarray(cudnn(x, **kw)[:, :40], np.float32)
    np.testing.assert_allclose(b, a, atol=0.05 * float(np.abs(a).max()))


def test_exact_gelu_is_the_erf_formula_in_float32():
  from scipy.special import erf

  x = np.concatenate([np.linspace(-12, 12, 20001), [-30.0, 30.0, 0.0]]).astype(np.float32)
  x64 = x.astype(np.float64)
  want = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
  # PyTorch's formula: 1 + erf cancels below x ~ -5.4 (GELU > -2e-6 there), 1 ulp elsewhere.
  np.testing.assert_allclose(jax.jit(vit.gelu)(x), want, rtol=3e-7, atol=7e-7)
  exact = jax.nn.gelu(x, approximate=False)
  np.testing.assert_allclose(vit.gelu(x), exact, rtol=3e-7, atol=7e-7)
  slope = 0.5 * (1 + erf(x64 / math.sqrt(2))) + x64 * np.exp(-(x64**2) / 2) / math.sqrt(2 * math.pi)
  grad = jax.jit(jax.vmap(jax.grad(vit.gelu)))(x)
  np.testing.assert_allclose(grad, slope, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attention", CPU_CHOICES)
def test_hugging_face_parity_with_every_cpu_attention(attention):
  torch = pytest.importorskip("torch")
  pytest.importorskip("transformers")
  from mgvm.train import losses
  from tests import test_parity_hf as hf_test

  hf = hf_test.fix_hardcoded_eps(
    hf_test.randomize(
      hf_test.transformers.VideoMAEForPreTraining(
        hf_test.hf_config(use_mean_pooling=False, norm_pix_loss=True)
      ),
      seed=1,
    )
  )
  mae = weights.load_torch_checkpoint(
    hf.state_dict(),
    kind="pretrain",
    num_frames=hf_test.T,
    image_size=hf_test.S,
    num_heads=3,
    decoder_heads=2,
    attention=attention,
  )
  blocks = [*mae.encoder.blocks, *mae.decoder.blocks]
  assert {b.attn.implementation for b in blocks} == {attention}
  pixel_values, mask, video = hf_test.inputs(0)
  with torch.no_grad():
    out = hf(pixel_values, bool_masked_pos=torch.from_numpy(mask))
  m = masking.from_boolean_mask(mask)

  def fwd(model, video, m):
    pred, _ = model(video, m)
    return pred, losses.mae_loss(video, pred, m, tubelet=(2, 16, 16))

  pred, loss = hf_test.jitted(mae, fwd)(video, m)
  assert hf_test.max_diff(pred, out.logits) <= hf_test.TOL
  assert abs(float(loss) - float(out.loss)) <= hf_test.TOL


def test_every_task_threads_attention_and_remat_to_every_block():
  for get in (pretrain.get_config, finetune.get_config, detect.get_config):
    config = get("runlocal")
    config.model.attention, config.model.remat = "xla", "dots"
    model = nnx.eval_shape(lambda c=config: tasks.build_model(c, num_classes=3))
    blocks = [n for _, n in nnx.iter_graph(model) if isinstance(n, vit.Block)]
    assert len(blocks) >= 2, config.task
    assert {(b.attn.implementation, b.remat) for b in blocks} == {("xla", "dots")}, config.task


@pytest.mark.slow
def test_cpu_benchmark_runs_every_variant_at_a_tiny_size(tmp_path, capsys):
  from benchmarks import attention_cpu

  args = "--dim 32 --depth 1 --heads 2 --frames 4 --size 32 --batch 2 --rounds 1 --iters 1"
  result = attention_cpu.main([*args.split(), "--json", str(tmp_path / "out.json")])
  assert result["tokens"] == 2 * 2 * 2
  for group in ("attention forward", "attention value+grad", "model forward", "fine-tuning step"):
    for variant in ("xla", "einsum"):
      assert result["ms"][f"{group} / {variant}"] > 0
  assert "| fine-tuning step | einsum |" in capsys.readouterr().out
