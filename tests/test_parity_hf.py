"""Parity with Hugging Face `transformers` VideoMAE (random weights, offline, float32).

Odd sizes on purpose (6 frames, 48 px, width 72 with 3 heads, decoder 40 with 2 heads) so a
transposed kernel, a swapped q/v bias or a head split in the wrong order cannot pass.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgvm import masking, weights  # noqa: E402
from mgvm.train import losses  # noqa: E402

TOL = 1e-5
B, T, S, C = 2, 6, 48, 3
N = (T // 2) * (S // 16) ** 2  # 27 tokens
NUM_MASKED = 18


def hf_config(**overrides):
  kwargs = dict(
    image_size=S,
    patch_size=16,
    num_channels=C,
    num_frames=T,
    tubelet_size=2,
    hidden_size=72,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=288,
    decoder_hidden_size=40,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=160,
    layer_norm_eps=1e-6,
    qv_bias=True,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  kwargs.update(overrides)
  return transformers.VideoMAEConfig(**kwargs)


def randomize(model, seed):
  """Overwrite EVERY parameter: HF's init leaves biases at 0 and LayerNorm weights at 1."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      for name, param in module.named_parameters(recurse=False):
        noise = torch.randn(param.shape, generator=gen)
        if isinstance(module, torch.nn.LayerNorm) and name == "weight":
          param.copy_(1.0 + 0.1 * noise)
        else:
          param.copy_(0.05 * noise)
  return model.eval()


def fix_hardcoded_eps(model):
  # HF builds `decoder.norm` and `fc_norm` as nn.LayerNorm(dim) with the default eps 1e-5
  # (ignoring config.layer_norm_eps), while the reference VideoMAE, and mgvm, use 1e-6
  # everywhere. Align the torch side so the comparison tests the weights, not this quirk.
  for name in ("decoder", "fc_norm"):
    sub = getattr(model, name, None)
    if sub is None:
      continue
    norm = sub.norm if name == "decoder" else sub
    norm.eps = 1e-6
  return model


def inputs(seed=0):
  gen = torch.Generator().manual_seed(seed)
  pixel_values = torch.randn((B, T, C, S, S), generator=gen)
  rng = np.random.default_rng(seed)
  mask = np.zeros((B, N), bool)
  for row in mask:
    row[rng.permutation(N)[:NUM_MASKED]] = True
  video = jnp.asarray(pixel_values.permute(0, 1, 3, 4, 2).numpy())  # [B, T, H, W, C]
  return pixel_values, mask, video


def jitted(model, fn):
  """jax.jit(fn(model, *args)) with the model split at the jit boundary."""
  graphdef, state = nnx.split(model)
  compiled = jax.jit(lambda st, *args: fn(nnx.merge(graphdef, st), *args))
  return lambda *args: compiled(state, *args)


def max_diff(ours, theirs):
  return float(np.max(np.abs(np.asarray(ours) - theirs.detach().numpy())))


def assert_hidden_close(ours, theirs):
  # Hidden states reach |x| ~ 8 here, where one float32 ulp is ~1e-6 and the two convs sum
  # 1536 products in different orders: allow 1e-5 relative on top of 1e-5 absolute.
  np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def pretrain_pair():
  hf = fix_hardcoded_eps(
    randomize(
      transformers.VideoMAEForPreTraining(hf_config(use_mean_pooling=False, norm_pix_loss=True)),
      seed=1,
    )
  )
  mae = weights.load_torch_checkpoint(
    hf.state_dict(), kind="pretrain", num_frames=T, image_size=S, num_heads=3, decoder_heads=2
  )
  return hf, mae


def test_pretraining_predictions_and_loss_match(pretrain_pair):
  hf, mae = pretrain_pair
  pixel_values, mask, video = inputs(0)
  with torch.no_grad():
    out = hf(pixel_values, bool_masked_pos=torch.from_numpy(mask))
  m = masking.from_boolean_mask(mask)

  def fwd(model, video, m):
    pred, aux = model(video, m)
    return pred, losses.mae_loss(video, pred, m, tubelet=(2, 16, 16)), aux["encoded"]

  pred, loss, _ = jitted(mae, fwd)(video, m)
  assert pred.shape == tuple(out.logits.shape) == (B, NUM_MASKED, 2 * 16 * 16 * C)
  d_pred, d_loss = max_diff(pred, out.logits), abs(float(loss) - float(out.loss))
  print(f"pretrain: max|pred diff| = {d_pred:.2e}, |loss diff| = {d_loss:.2e}")
  assert float(np.abs(out.logits.numpy()).max()) > 0.1  # not a trivially small output
  assert d_pred <= TOL
  assert d_loss <= TOL


def test_encoder_hidden_states_match(pretrain_pair):
  hf, mae = pretrain_pair
  pixel_values, mask, video = inputs(1)
  m = masking.from_boolean_mask(mask)
  with torch.no_grad():
    full = hf.videomae(pixel_values).last_hidden_state
    visible = hf.videomae(pixel_values, bool_masked_pos=torch.from_numpy(mask)).last_hidden_state
  encode = jitted(mae, lambda model, video, ids: model.encoder(video, ids))
  d_full = max_diff(encode(video, None), full)
  d_visible = max_diff(encode(video, m.ids_keep), visible)
  print(f"encoder: max diff all tokens {d_full:.2e}, visible tokens {d_visible:.2e}")
  assert_hidden_close(encode(video, None), full)
  assert_hidden_close(encode(video, m.ids_keep), visible)


def test_bare_videomae_model_matches_classifier_encoder():
  # A bare `VideoMAEModel` (keys without the `videomae.` prefix) with mean pooling has no
  # final LayerNorm, like the classifier's encoder.
  hf = randomize(transformers.VideoMAEModel(hf_config(use_mean_pooling=True)), seed=3)
  clf = weights.load_torch_checkpoint(
    hf.state_dict(), kind="classifier", num_classes=5, num_frames=T, image_size=S, num_heads=3
  )
  pixel_values, _, video = inputs(2)
  with torch.no_grad():
    expected = hf(pixel_values).last_hidden_state
  hidden = jitted(clf, lambda model, video: model.encoder(video))(video)
  print(f"bare VideoMAEModel vs classifier encoder: max diff {max_diff(hidden, expected):.2e}")
  assert_hidden_close(hidden, expected)


def test_classification_logits_match(tmp_path):
  hf = fix_hardcoded_eps(
    randomize(
      transformers.VideoMAEForVideoClassification(hf_config(use_mean_pooling=True, num_labels=7)),
      seed=2,
    )
  )
  hf.save_pretrained(tmp_path)  # config.json + model.safetensors; heads come from config.json
  clf = weights.load_torch_checkpoint(tmp_path, kind="classifier")
  assert clf.num_classes == 7 and clf.grid == (3, 3, 3) and clf.encoder.num_heads == 3
  pixel_values, _, video = inputs(3)
  with torch.no_grad():
    expected = hf(pixel_values).logits
  logits = jitted(clf, lambda model, video: model(video)[0])(video)
  d = max_diff(logits, expected)
  print(f"classifier: max|logit diff| = {d:.2e}")
  assert logits.shape == (B, 7)
  assert d <= TOL


def test_hf_export_loads_strictly_into_transformers(pretrain_pair):
  hf, mae = pretrain_pair
  fresh = transformers.VideoMAEForPreTraining(hf_config(use_mean_pooling=False))
  result = fresh.load_state_dict(weights.to_torch_state_dict(mae, layout="hf"), strict=True)
  assert not result.missing_keys and not result.unexpected_keys
  for key, value in hf.state_dict().items():
    torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
