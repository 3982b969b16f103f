"""A model's parameters in the PyTorch layouts: the official VideoMAE one and Hugging Face's.

`official_arrays` / `hf_arrays` give numpy state dicts (no torch needed: `mgvm.weights.hf_export`
writes the Hugging Face one as safetensors); `to_torch_state_dict` wraps either in torch tensors
and `save_official` writes an official `.pth`. torch is imported only by those two.
"""

from __future__ import annotations

import os
import re

import numpy as np

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.weights.layouts import hf_name
from mgvm.weights.params import model_params

__all__ = ["hf_arrays", "official_arrays", "save_official", "to_torch_state_dict"]


def _check_model(model) -> None:
  if not isinstance(model, (VideoMAE, VideoClassifier)):
    raise TypeError(
      f"exports a VideoMAE or VideoClassifier; got {type(model).__name__} (EVAD's detector has "
      "no official or Hugging Face VideoMAE layout)"
    )


def _pretraining_arrays(model: VideoMAE | VideoClassifier) -> dict[str, np.ndarray]:
  """float32 numpy state dict under the official pre-training names (`encoder.`, `decoder.`,
  `fc_norm`, `head`), PyTorch layouts: the names `hf_name` maps and the official ones derive from."""
  _check_model(model)
  out: dict[str, np.ndarray] = {}
  for path, var in model_params(model).items():
    value = np.array(var.get_value(), dtype=np.float32)
    head, _, last = path.rpartition(".")
    if last == "scale":
      path = f"{head}.weight"
    elif last == "kernel":
      path = f"{head}.weight"
      value = value.T if value.ndim == 2 else value.transpose(4, 3, 0, 1, 2)
    elif last == "pos_embed":  # a learned table: the reference stores it as [1, N, D]
      value = value[None]
    out[path] = np.ascontiguousarray(value)
  return out


def official_arrays(model: VideoMAE | VideoClassifier) -> dict[str, np.ndarray]:
  """float32 numpy state dict in the official layout: `PretrainVisionTransformer` names
  (`encoder.`, `decoder.`, `encoder_to_decoder`, `mask_token`) for a `VideoMAE`,
  `VisionTransformer` names (`patch_embed`, `blocks`, `fc_norm`, `head`) for a classifier."""
  arrays = _pretraining_arrays(model)
  if isinstance(model, VideoClassifier):
    arrays = {k.removeprefix("encoder."): v for k, v in arrays.items()}
  return arrays


def hf_arrays(model: VideoMAE | VideoClassifier) -> dict[str, np.ndarray]:
  """float32 numpy state dict in the Hugging Face `transformers` VideoMAE layout
  (`VideoMAEForPreTraining` / `VideoMAEForVideoClassification`); q/k/v split, the zero k bias
  omitted. Layer scale and learned positions have no Hugging Face equivalent and raise."""
  _check_model(model)
  if model.encoder.pos_embed is not None:
    raise ValueError(
      "this model has a learned pos_embed; Hugging Face VideoMAE has fixed sinusoid positions "
      "only, so it cannot hold it (export --format official instead)"
    )
  out: dict[str, np.ndarray] = {}
  for name, value in _pretraining_arrays(model).items():
    m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.attn\.qkv\.weight$", name)
    if m:
      layer = (
        ("videomae.encoder.layer." if m.group(1) == "encoder" else "decoder.decoder_layers.")
        + m.group(2)
        + ".attention.attention."
      )
      for part, chunk in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
        out[f"{layer}{part}.weight"] = np.ascontiguousarray(chunk)
    else:
      out[hf_name(name)] = value
  return out


def to_torch_state_dict(model: VideoMAE | VideoClassifier, layout: str = "official"):
  """PyTorch state dict of torch tensors in the official (`"official"`) or Hugging Face (`"hf"`) layout.

  The official layout loads into the reference `PretrainVisionTransformer` /
  `VisionTransformer`; the Hugging Face one into `VideoMAEForPreTraining` /
  `VideoMAEForVideoClassification` (use_mean_pooling=False / True respectively).
  """
  import torch  # pylint: disable=g-import-not-at-top

  if layout not in ("official", "hf"):
    raise ValueError(f"layout must be 'official' or 'hf'; got {layout!r}.")
  arrays = official_arrays(model) if layout == "official" else hf_arrays(model)
  return {k: torch.from_numpy(v) for k, v in arrays.items()}


def save_official(model: VideoMAE | VideoClassifier, path: str) -> str:
  """Writes `{"model": state_dict}` in the official layout to `path` (`.pth`, as the reference's
  checkpoints; `load_torch_checkpoint` and the official code read it). Returns the path."""
  import torch  # pylint: disable=g-import-not-at-top

  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  torch.save({"model": to_torch_state_dict(model, "official")}, path)
  return path
