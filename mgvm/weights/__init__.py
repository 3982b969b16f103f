"""Import and export model weights: PyTorch checkpoints (official and Hugging Face) and plain dicts.

- `read`: safe reading of `.pth`/`.pt`/`.bin`/`.ckpt` (`weights_only=True`), `.safetensors`,
  Hugging Face directories and in-memory state dicts (`read_state_dict`).
- `layouts`: the official <-> Hugging Face key layouts and the PyTorch -> Flax parameter layout.
- `params`: the parameter checker (`CheckpointMismatchError`), `export_params` /
  `import_params` (plain nested dicts), `merge_params`, `encoder_from_pretrained`.
- `torch_import`: `load_torch_checkpoint` (a `VideoMAE` or `VideoClassifier` of the detected size).
- `torch_export`: `to_torch_state_dict` (official or Hugging Face layout).

torch is imported lazily, only by the functions that read `.pth` files, convert torch tensors
or write torch state dicts, so this package imports without it.
"""

from __future__ import annotations

from mgvm.weights.params import (
  CheckpointMismatchError,
  encoder_from_pretrained,
  export_params,
  import_params,
  merge_params,
  shape_differences,
)
from mgvm.weights.read import UnsafeCheckpointError, read_state_dict
from mgvm.weights.torch_export import to_torch_state_dict
from mgvm.weights.torch_import import load_torch_checkpoint

__all__ = [
  "CheckpointMismatchError",
  "UnsafeCheckpointError",
  "encoder_from_pretrained",
  "export_params",
  "import_params",
  "load_torch_checkpoint",
  "merge_params",
  "read_state_dict",
  "shape_differences",
  "to_torch_state_dict",
]
