"""`to_torch_state_dict`: a model's parameters as a PyTorch state dict (official or Hugging Face).

torch is imported only when the function runs.
"""

from __future__ import annotations

import re

import numpy as np

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.weights.layouts import hf_name
from mgvm.weights.params import model_params

__all__ = ["to_torch_state_dict"]


def to_torch_state_dict(model: VideoMAE | VideoClassifier, layout: str = "official"):
  """PyTorch state dict of torch tensors in the official (`"official"`) or Hugging Face (`"hf"`) layout.

  The official layout loads into the reference `PretrainVisionTransformer` /
  `VisionTransformer`; the Hugging Face one into `VideoMAEForPreTraining` /
  `VideoMAEForVideoClassification` (use_mean_pooling=False / True respectively).
  """
  import torch  # pylint: disable=g-import-not-at-top

  if layout not in ("official", "hf"):
    raise ValueError(f"layout must be 'official' or 'hf'; got {layout!r}.")
  is_classifier = isinstance(model, VideoClassifier)
  official: dict[str, np.ndarray] = {}
  for path, var in model_params(model).items():
    value = np.array(var.get_value(), dtype=np.float32)
    head, _, last = path.rpartition(".")
    if last == "scale":
      path = f"{head}.weight"
    elif last == "kernel":
      path = f"{head}.weight"
      value = value.T if value.ndim == 2 else value.transpose(4, 3, 0, 1, 2)
    official[path] = np.ascontiguousarray(value)
  out: dict[str, np.ndarray] = {}
  if layout == "official":
    for name, value in official.items():
      if is_classifier and name.startswith("encoder."):
        name = name[len("encoder.") :]
      out[name] = value
  else:
    for name, value in official.items():
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
  return {k: torch.from_numpy(v) for k, v in out.items()}
