"""A model as a Hugging Face `transformers` VideoMAE directory: `config.json` + `model.safetensors`.

`VideoMAEForVideoClassification.from_pretrained(DIR)` loads a `VideoClassifier`'s directory and
`VideoMAEForPreTraining.from_pretrained(DIR)` a `VideoMAE`'s (`use_mean_pooling` = not
`encoder_norm`). Written with `safetensors.numpy`: no torch or transformers needed. One
difference is Hugging Face's own: it builds `fc_norm` and `decoder.norm` with LayerNorm eps 1e-5
whatever the config says, where VideoMAE and mgvm use 1e-6 (docs/tools.md measures the effect).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import LN_EPS
from mgvm.weights.torch_export import hf_arrays

__all__ = ["hf_config", "save_hf"]


def _hidden(model, prefix: str) -> int:
  """The MLP width of the first block under `prefix` ("encoder" or "decoder")."""
  blocks = getattr(model, prefix).blocks
  return int(blocks[0].mlp.fc1.kernel.shape[1]) if len(blocks) else 0


def hf_config(model: VideoMAE | VideoClassifier, class_names: Sequence[str] = ()) -> dict[str, Any]:
  """The `config.json` of `model` as a `transformers` `VideoMAEConfig` (model_type "videomae")."""
  enc = model.encoder
  if enc.blocks and enc.blocks[0].gamma_1 is not None:
    raise ValueError(
      "this model uses layer scale (gamma_1 / gamma_2), which Hugging Face VideoMAE has not"
    )
  t, h, w = enc.grid
  pt, ph, pw = enc.tubelet
  is_classifier = isinstance(model, VideoClassifier)
  config: dict[str, Any] = dict(
    model_type="videomae",
    architectures=["VideoMAEForVideoClassification" if is_classifier else "VideoMAEForPreTraining"],
    image_size=h * ph if h * ph == w * pw else [h * ph, w * pw],
    patch_size=ph if ph == pw else [ph, pw],
    num_channels=int(enc.patch_embed.proj.kernel.shape[3]),
    num_frames=t * pt,
    tubelet_size=pt,
    hidden_size=enc.dim,
    num_hidden_layers=enc.depth,
    num_attention_heads=enc.num_heads,
    intermediate_size=_hidden(model, "encoder"),
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.02,
    layer_norm_eps=LN_EPS,
    qv_bias=bool(enc.blocks and enc.blocks[0].attn.q_bias is not None),
    norm_pix_loss=True,
  )
  if is_classifier:
    config["use_mean_pooling"] = True
    names = list(class_names) or [f"class_{k}" for k in range(model.num_classes)]
    if len(names) != model.num_classes:
      raise ValueError(f"{len(names)} class names for a head of {model.num_classes} classes")
    config["id2label"] = {str(k): name for k, name in enumerate(names)}
    config["label2id"] = {name: k for k, name in enumerate(names)}
  else:
    spec = model.spec
    config.update(
      use_mean_pooling=enc.norm is None,
      decoder_hidden_size=spec.decoder_dim,
      decoder_num_hidden_layers=spec.decoder_depth,
      decoder_num_attention_heads=spec.decoder_heads,
      decoder_intermediate_size=_hidden(model, "decoder"),
    )
  return config


def save_hf(
  model: VideoMAE | VideoClassifier, directory: str, class_names: Sequence[str] = ()
) -> str:
  """Writes `directory/config.json` and `directory/model.safetensors`; returns `directory`."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  config = hf_config(model, class_names)
  arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in hf_arrays(model).items()}
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=1)
  save_file(arrays, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  return directory
