"""Weight import/export: param dict round trips, the mismatch checker, torch checkpoints."""

import argparse
import functools
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from mgvm import masking, weights  # noqa: E402
from mgvm.models import VideoClassifier, VideoMAE  # noqa: E402

SMALL = dict(size=None, dim=48, depth=2, num_heads=2, num_frames=4, image_size=32)
MAE_SMALL = dict(SMALL, decoder_dim=32, decoder_depth=1, decoder_heads=2)
GRID_N = 2 * 2 * 2


def random_params(model, seed):
  """Random values for every parameter (LayerNorm `scale`s around 1), as a flat dotted dict."""
  rng = np.random.default_rng(seed)
  out = {}
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param):
      noise = rng.normal(size=var.get_value().shape).astype(np.float32)
      out[".".join(map(str, path))] = 1.0 + 0.1 * noise if path[-1] == "scale" else 0.05 * noise
  return out


def random_model(cls, seed=0, **kw):
  """A model with random weights, built abstractly (eager NNX init on CPU is slow)."""
  model = nnx.eval_shape(lambda: cls(**kw, rngs=nnx.Rngs(0)))
  return weights.import_params(model, random_params(model, seed))


def small_mae(seed=0, **kw):
  return random_model(VideoMAE, seed, **{**MAE_SMALL, **kw})


def leaves(tree):
  return {
    jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def assert_same_params(a, b):
  la, lb = leaves(weights.export_params(a)), leaves(weights.export_params(b))
  assert la.keys() == lb.keys()
  for k in la:
    np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


@functools.partial(jax.jit, static_argnums=0)
def _mae_forward(graphdef, state, video, m):
  return nnx.merge(graphdef, state)(video, m)[0]


def mae_forward(model, video, m):
  return _mae_forward(*nnx.split(model), video, m)


def video_and_mask(seed=0, batch=2, frames=4, size=32, num_masked=5):
  rng = np.random.default_rng(seed)
  video = jnp.asarray(rng.normal(size=(batch, frames, size, size, 3)), jnp.float32)
  n = (frames // 2) * (size // 16) ** 2
  mask = np.zeros((batch, n), bool)
  for row in mask:
    row[rng.permutation(n)[:num_masked]] = True
  return video, masking.from_boolean_mask(mask)


# ----------------------------------------------------------------------------- export / import


def test_export_import_round_trip():
  a, b = small_mae(0), small_mae(1)
  params = weights.export_params(a)
  kernel = params["encoder"]["blocks"]["0"]["attn"]["qkv"]["kernel"]
  assert isinstance(kernel, np.ndarray) and kernel.shape == (48, 144)
  assert params["mask_token"].shape == (1, 1, 32)
  assert params["encoder"]["patch_embed"]["proj"]["kernel"].shape == (2, 16, 16, 3, 48)
  video, m = video_and_mask()
  assert not np.allclose(mae_forward(a, video, m), mae_forward(b, video, m))

  assert weights.import_params(b, params) is b
  assert_same_params(a, b)
  np.testing.assert_array_equal(mae_forward(a, video, m), mae_forward(b, video, m))
  params["mask_token"][...] = 7.0  # the export is a copy, not a view of the model
  assert not np.any(np.asarray(a.mask_token[...]) == 7.0)


def test_import_accepts_flat_dotted_keys():
  a, b = small_mae(0), small_mae(1)
  flat = {
    jax.tree_util.keystr(p, simple=True, separator="."): v
    for p, v in jax.tree_util.tree_flatten_with_path(weights.export_params(a))[0]
  }
  assert "encoder.blocks.1.mlp.fc2.kernel" in flat
  weights.import_params(b, flat)
  assert_same_params(a, b)


def test_import_reports_every_problem_and_leaves_model_unchanged():
  a, b = small_mae(0), small_mae(1)
  before = leaves(weights.export_params(b))
  params = weights.export_params(a)
  del params["encoder"]["blocks"]["1"]["attn"]["v_bias"]
  params["decoder"]["extra"] = {"kernel": np.zeros((3, 3), np.float32)}
  params["encoder"]["blocks"]["0"]["mlp"]["fc1"]["kernel"] = np.zeros((48, 100), np.float32)
  with pytest.raises(weights.CheckpointMismatchError) as info:
    weights.import_params(b, params)
  msg = str(info.value)
  assert "missing" in msg and "encoder.blocks.1.attn.v_bias" in msg
  assert "unexpected" in msg and "decoder.extra.kernel" in msg
  assert "encoder.blocks.0.mlp.fc1.kernel" in msg and "(48, 192)" in msg and "(48, 100)" in msg
  after = leaves(weights.export_params(b))
  for k in before:
    np.testing.assert_array_equal(before[k], after[k])


# ----------------------------------------------------------------------------- torch checkpoints


def hf_config(**overrides):
  transformers = pytest.importorskip("transformers")
  kwargs = dict(
    image_size=32,
    patch_size=16,
    num_channels=3,
    num_frames=4,
    tubelet_size=2,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=192,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
    layer_norm_eps=1e-6,
    qv_bias=True,
  )
  kwargs.update(overrides)
  return transformers.VideoMAEConfig(**kwargs)


def randomized(model, seed=0):
  torch = pytest.importorskip("torch")
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(0.05 * torch.randn(p.shape, generator=gen))
  return model


def hf_pretrain_state_dict(seed=0, **config):
  transformers = pytest.importorskip("transformers")
  cfg = hf_config(**{"use_mean_pooling": False, **config})
  return randomized(transformers.VideoMAEForPreTraining(cfg), seed).state_dict()


def hf_classifier_state_dict(seed=0, **config):
  transformers = pytest.importorskip("transformers")
  cfg = hf_config(**{"use_mean_pooling": True, "num_labels": 5, **config})
  return randomized(transformers.VideoMAEForVideoClassification(cfg), seed).state_dict()


_HF_BLOCK = {
  "attention.attention.query.bias": "attn.q_bias",
  "attention.attention.value.bias": "attn.v_bias",
  "attention.output.dense.weight": "attn.proj.weight",
  "attention.output.dense.bias": "attn.proj.bias",
  "intermediate.dense.weight": "mlp.fc1.weight",
  "intermediate.dense.bias": "mlp.fc1.bias",
  "output.dense.weight": "mlp.fc2.weight",
  "output.dense.bias": "mlp.fc2.bias",
  "layernorm_before.weight": "norm1.weight",
  "layernorm_before.bias": "norm1.bias",
  "layernorm_after.weight": "norm2.weight",
  "layernorm_after.bias": "norm2.bias",
}


def hf_to_official(sd, *, finetuned=False):
  """The official VideoMAE names for a Hugging Face state dict (written independently of mgvm)."""
  torch = pytest.importorskip("torch")
  enc = "" if finetuned else "encoder."
  out = {}
  for key, value in sd.items():
    block = re.match(r"(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)", key)
    if block:
      stem = enc + "blocks." if block.group(1).startswith("videomae") else "decoder.blocks."
      stem += block.group(2) + "."
      rest = block.group(3)
      if rest == "attention.attention.query.weight":
        parts = [sd[key.replace("query", name)] for name in ("query", "key", "value")]
        out[stem + "attn.qkv.weight"] = torch.cat(parts, dim=0).clone()
      elif rest not in ("attention.attention.key.weight", "attention.attention.value.weight"):
        out[stem + _HF_BLOCK[rest]] = value.clone()
    elif key.startswith("videomae.embeddings.patch_embeddings.projection."):
      out[enc + "patch_embed.proj." + key.split(".")[-1]] = value.clone()
    elif key.startswith("videomae.layernorm."):
      out[enc + "norm." + key.split(".")[-1]] = value.clone()
    elif key.startswith("classifier."):
      out["head." + key.split(".")[-1]] = value.clone()
    else:  # encoder_to_decoder, mask_token, decoder.norm, decoder.head, fc_norm
      out[key] = value.clone()
  return out


def test_official_pth_matches_hf_layout(tmp_path):
  torch = pytest.importorskip("torch")
  hf_sd = hf_pretrain_state_dict(seed=0)
  official = hf_to_official(hf_sd)
  assert (
    "encoder.blocks.1.attn.qkv.weight" in official and "decoder.blocks.0.attn.q_bias" in official
  )
  path = tmp_path / "checkpoint-799.pth"
  # Like the official training checkpoints: the weights under "model", plus `args`.
  torch.save({"model": official, "epoch": 799, "args": argparse.Namespace(model="x")}, path)
  from_pth = weights.load_torch_checkpoint(
    path, kind="pretrain", num_frames=4, image_size=32, num_heads=2, decoder_heads=2
  )
  from_hf = weights.load_torch_checkpoint(
    hf_sd, kind="pretrain", num_frames=4, image_size=32, num_heads=2, decoder_heads=2
  )
  assert from_pth.spec == from_hf.spec
  assert from_pth.spec.decoder_depth == 1 and from_pth.grid == (2, 2, 2)
  assert_same_params(from_pth, from_hf)
  video, m = video_and_mask()
  np.testing.assert_array_equal(mae_forward(from_pth, video, m), mae_forward(from_hf, video, m))
  # The qkv kernel is [in, out] with q, k, v column blocks; q/v biases land in place.
  params = weights.export_params(from_pth)["encoder"]["blocks"]["0"]["attn"]
  np.testing.assert_array_equal(
    params["qkv"]["kernel"][:, 48:96],
    hf_sd["videomae.encoder.layer.0.attention.attention.key.weight"].numpy().T,
  )
  np.testing.assert_array_equal(
    params["v_bias"], hf_sd["videomae.encoder.layer.0.attention.attention.value.bias"].numpy()
  )


def test_official_finetuned_matches_hf_classifier(tmp_path):
  torch = pytest.importorskip("torch")
  hf_sd = hf_classifier_state_dict(seed=1)
  official = hf_to_official(hf_sd, finetuned=True)
  assert "blocks.0.attn.qkv.weight" in official and "head.weight" in official
  path = tmp_path / "finetuned.pth"
  torch.save({"module": official}, path)  # DeepSpeed-style wrapper
  from_pth = weights.load_torch_checkpoint(
    path, kind="classifier", num_frames=4, image_size=32, num_heads=2
  )
  from_hf = weights.load_torch_checkpoint(
    hf_sd, kind="classifier", num_frames=4, image_size=32, num_heads=2
  )
  assert isinstance(from_pth, VideoClassifier) and from_pth.num_classes == 5
  assert_same_params(from_pth, from_hf)


def test_official_round_trip_with_layer_scale(tmp_path):
  torch = pytest.importorskip("torch")
  mae = small_mae(3, layer_scale_init=0.1)  # every gamma, bias and norm weight random
  sd = weights.to_torch_state_dict(mae, layout="official")
  assert sd["encoder.blocks.0.attn.qkv.weight"].shape == (144, 48)
  assert sd["encoder.patch_embed.proj.weight"].shape == (48, 3, 2, 16, 16)
  assert "encoder.blocks.1.gamma_2" in sd and "decoder.blocks.0.gamma_1" in sd
  path = tmp_path / "mae.pth"
  torch.save({"model": sd}, path)
  back = weights.load_torch_checkpoint(
    path, num_frames=4, image_size=32, num_heads=2, decoder_heads=2
  )
  assert back.encoder.blocks[0].gamma_1 is not None
  assert_same_params(mae, back)

  clf = random_model(VideoClassifier, 4, num_classes=3, **SMALL)
  sd = weights.to_torch_state_dict(clf, layout="official")
  assert "blocks.0.attn.qkv.weight" in sd and "fc_norm.weight" in sd and "head.bias" in sd
  back = weights.load_torch_checkpoint(
    sd, kind="classifier", num_frames=4, image_size=32, num_heads=2
  )
  assert_same_params(clf, back)


def test_safetensors_file_of_numpy_arrays(tmp_path):
  pytest.importorskip("torch")  # for to_torch_state_dict
  pytest.importorskip("safetensors")
  from safetensors.numpy import save_file

  mae = small_mae(5)
  sd = {k: v.numpy() for k, v in weights.to_torch_state_dict(mae).items()}
  save_file(sd, str(tmp_path / "w.safetensors"))
  back = weights.load_torch_checkpoint(
    tmp_path / "w.safetensors", num_frames=4, image_size=32, num_heads=2, decoder_heads=2
  )
  assert_same_params(mae, back)


class _Payload:
  """Pickles as a call to `exec` that would write a marker file."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def test_pickled_code_is_refused_without_running(tmp_path):
  torch = pytest.importorskip("torch")
  marker = tmp_path / "marker.txt"
  path = tmp_path / "evil.pth"
  torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
  with pytest.raises(weights.UnsafeCheckpointError, match="non-tensor pickled objects"):
    weights.load_torch_checkpoint(path)
  assert not marker.exists()
  # The payload is live: a plain unpickle would have run it.
  torch.load(path, weights_only=False)
  assert marker.exists()


def test_classifier_from_pretraining_checkpoint():
  hf_sd = hf_pretrain_state_dict(seed=2)
  with pytest.raises(ValueError, match="num_classes"):
    weights.load_torch_checkpoint(
      hf_sd, kind="classifier", num_heads=2, num_frames=4, image_size=32
    )
  clf = weights.load_torch_checkpoint(
    hf_sd, kind="classifier", num_classes=4, num_heads=2, num_frames=4, image_size=32
  )
  mae = weights.load_torch_checkpoint(
    hf_sd, num_heads=2, decoder_heads=2, num_frames=4, image_size=32
  )
  ours, theirs = weights.export_params(clf), weights.export_params(mae)
  assert "norm" not in ours["encoder"]  # the pre-training final norm is dropped
  del theirs["encoder"]["norm"]
  a, b = leaves(ours["encoder"]), leaves(theirs["encoder"])
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  np.testing.assert_array_equal(ours["fc_norm"]["scale"], np.ones(48, np.float32))  # fresh
  assert ours["head"]["kernel"].shape == (48, 4)


def test_hf_directory_from_save_pretrained(tmp_path):
  transformers = pytest.importorskip("transformers")
  hf = randomized(
    transformers.VideoMAEForPreTraining(
      hf_config(
        use_mean_pooling=False,
        hidden_size=40,
        num_attention_heads=5,
        intermediate_size=160,
        decoder_hidden_size=24,
        decoder_num_attention_heads=3,
        decoder_intermediate_size=96,
        num_frames=6,
      )
    ),
    seed=3,
  )
  hf.save_pretrained(tmp_path)
  assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
  mae = weights.load_torch_checkpoint(tmp_path)  # heads, frames and size from config.json
  assert mae.spec.num_heads == 5 and mae.spec.decoder_heads == 3 and mae.grid == (3, 2, 2)
  assert_same_params(
    mae,
    weights.load_torch_checkpoint(
      hf.state_dict(), num_heads=5, decoder_heads=3, num_frames=6, image_size=32
    ),
  )
  with pytest.raises(ValueError, match="contradicts config.json"):
    weights.load_torch_checkpoint(tmp_path, num_heads=4)


def test_checkpoint_mismatch_lists_every_problem():
  torch = pytest.importorskip("torch")
  sd = weights.to_torch_state_dict(small_mae(6))
  del sd["encoder.blocks.1.attn.v_bias"]
  sd["encoder.extra.weight"] = torch.zeros(3, 4)
  sd["decoder.head.bias"] = torch.zeros(10)
  with pytest.raises(weights.CheckpointMismatchError) as info:
    weights.load_torch_checkpoint(sd, num_frames=4, image_size=32, num_heads=2, decoder_heads=2)
  msg = str(info.value)
  assert "encoder.blocks.1.attn.v_bias" in msg
  assert "'encoder.extra.weight' (3, 4)" in msg
  assert "decoder.head.bias" in msg and "(1536,)" in msg and "(10,)" in msg


def test_unusable_checkpoints_give_clear_errors():
  with pytest.raises(ValueError, match="no decoder"):
    weights.load_torch_checkpoint(hf_classifier_state_dict(), kind="pretrain", num_heads=2)
  with pytest.raises(ValueError, match="mean pooling"):
    weights.load_torch_checkpoint(
      hf_classifier_state_dict(use_mean_pooling=False), kind="classifier", num_heads=2
    )
  with pytest.raises(ValueError, match="kind"):
    weights.load_torch_checkpoint({}, kind="detector")
  with pytest.raises(ValueError, match="num_heads="):
    weights.load_torch_checkpoint(hf_pretrain_state_dict(), decoder_heads=2)  # width 48: no default
  with pytest.raises(ValueError, match="layout"):
    weights.load_torch_checkpoint({"foo.weight": np.zeros(3)})


def test_eval_checkpoint_takes_heads_from_the_config_and_names_each_differing_parameter(tmp_path):
  """`eval.py --checkpoint`: a width-32 file (no official head count) loads with the config's
  heads; a file of another width and depth fails listing each parameter with both shapes."""
  torch = pytest.importorskip("torch")
  from configs import finetune
  from mgvm.run import evaluate as eval_run
  from mgvm.tasks import finetune as finetune_task
  from mgvm.weights.torch_import import UnknownHeadsError
  from tests.helpers import tiny

  config = tiny(finetune.get_config("runlocal"), str(tmp_path))  # dim 32, depth 2, 2 heads
  model = nnx.eval_shape(lambda: finetune_task.build_model(config, num_classes=3))
  abstract = nnx.state(model, nnx.Param)
  sizes = dict(SMALL, num_frames=8, image_size=32)
  same = random_model(VideoClassifier, 1, num_classes=3, **dict(sizes, dim=32))
  torch.save({"model": weights.to_torch_state_dict(same, layout="official")}, tmp_path / "a.pth")
  params, origin = eval_run.restore_params(
    config, str(tmp_path), abstract, str(tmp_path / "a.pth"), num_classes=3, model=model
  )
  assert origin.startswith("torch checkpoint")
  assert_same_params(same, nnx.merge(nnx.graphdef(model), params))
  with pytest.raises(UnknownHeadsError, match="pass num_heads"):  # what eval.py said before
    finetune_task.import_torch(config, str(tmp_path / "a.pth"), num_classes=3)

  other = random_model(VideoClassifier, 2, num_classes=3, **dict(sizes, dim=48, depth=3))
  torch.save({"model": weights.to_torch_state_dict(other, layout="official")}, tmp_path / "b.pth")
  with pytest.raises(weights.CheckpointMismatchError) as e:
    eval_run.restore_params(
      config, str(tmp_path), abstract, str(tmp_path / "b.pth"), num_classes=3, model=model
    )
  message = str(e.value)
  assert "set config.model" in message
  assert "encoder/blocks/0/attn/qkv/kernel: model (32, 96) vs file (48, 144)" in message
  assert "encoder/blocks/2/attn/proj/kernel: in the file, not in the model" in message
  assert "head/kernel: model (32, 3) vs file (48, 3)" in message
