"""`config.init_from` takes released weights too: a Hugging Face directory or an official `.pth`
(pre-training or fine-tuned, with the usual key prefixes), besides an mgvm workdir."""

import os
import sys

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import finetune  # noqa: E402
from mgvm import tasks, weights  # noqa: E402
from mgvm.tasks import common  # noqa: E402
from mgvm.weights import encoder_from_pretrained  # noqa: E402
from tests.helpers import tiny  # noqa: E402


def _config():
  config = tiny(finetune.get_config("runlocal"))  # width 32, 2 blocks, 2 heads, 8 x 32 px
  config.num_classes = 15
  return config


def _hf_pretraining(tmp_path):
  hf = transformers.VideoMAEForPreTraining(
    transformers.VideoMAEConfig(
      image_size=32,
      num_frames=8,
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=2,
      intermediate_size=128,
      decoder_hidden_size=16,
      decoder_num_hidden_layers=1,
      decoder_num_attention_heads=2,
      decoder_intermediate_size=64,
      use_mean_pooling=False,
      qv_bias=True,
    )
  )
  with torch.no_grad():
    for p in hf.parameters():
      p.add_(0.01 * torch.randn_like(p))
  hf.save_pretrained(tmp_path / "hf")
  return str(tmp_path / "hf")


def _encoder_taken(config, source):
  model = nnx.eval_shape(lambda: tasks.build_model(config, num_classes=15))
  pure = common.init_from_params(config, source, model)
  return encoder_from_pretrained(nnx.state(model, nnx.Param), pure, log=lambda _: None)


def _kernel(tree):
  return np.asarray(tree["encoder"]["blocks"][1]["attn"]["qkv"]["kernel"])


def test_hugging_face_and_official_weights_give_the_same_encoder(tmp_path):
  config = _config()
  hf_dir = _hf_pretraining(tmp_path)
  imported = weights.load_torch_checkpoint(hf_dir, kind="pretrain")
  want = _kernel(nnx.state(imported, nnx.Param).to_pure_dict())
  np.testing.assert_array_equal(_kernel(_encoder_taken(config, hf_dir)), want)
  # the official layout, saved by DistributedDataParallel (`module.`) in a `model` wrapper
  official = weights.to_torch_state_dict(imported, layout="official")
  torch.save({"model": {f"module.{k}": v for k, v in official.items()}}, tmp_path / "pre.pth")
  np.testing.assert_array_equal(_kernel(_encoder_taken(config, str(tmp_path / "pre.pth"))), want)
  # a fine-tuned model under `backbone.`, with a head beside it (EVAD / mmaction layout)
  clf = weights.load_torch_checkpoint(hf_dir, kind="classifier", num_classes=3)
  state = {f"backbone.{k}": v for k, v in weights.to_torch_state_dict(clf).items()}
  state["cls_head.fc.weight"] = torch.zeros(3, 32)
  torch.save({"state_dict": state}, tmp_path / "det.pth")
  taken = _encoder_taken(config, str(tmp_path / "det.pth"))
  np.testing.assert_array_equal(_kernel(taken), want)
  assert jax.tree.leaves(taken)  # encoder leaves only; the new head stays fresh
  assert "head" not in taken and "fc_norm" not in taken


def test_init_from_names_what_it_cannot_read(tmp_path):
  config = _config()
  model = nnx.eval_shape(lambda: tasks.build_model(config, num_classes=15))
  with pytest.raises(FileNotFoundError, match="no such workdir, checkpoint file or directory"):
    common.init_from_params(config, str(tmp_path / "nowhere"), model)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="neither an mgvm workdir .* nor a Hugging Face"):
    common.init_from_params(config, str(tmp_path / "empty"), model)
