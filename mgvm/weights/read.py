"""Read a checkpoint into a flat state dict of numpy arrays, never running pickled code.

Sources: a `.pth`/`.pt`/`.bin`/`.ckpt` file (unpickled with `weights_only=True`), a
`.safetensors` file, a Hugging Face directory (`config.json` + weights, sharded or not) or an
in-memory state dict; `model` / `module` / `state_dict` wrappers and the `module.` /
`_orig_mod.` prefixes are unwrapped. torch is imported only to read `.pth` files or convert
torch tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["UnsafeCheckpointError", "read_state_dict"]

_WRAPPERS = ("model", "module", "state_dict")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class UnsafeCheckpointError(ValueError):
  """A pickled checkpoint holds objects other than tensors and plain containers."""


def to_numpy(x: Any) -> np.ndarray:
  """torch tensor / numpy / jax array -> numpy (half precision widened to float32)."""
  if type(x).__module__.startswith("torch"):
    import torch  # pylint: disable=g-import-not-at-top

    t = x.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
      t = t.float()
    return t.numpy()
  return np.asarray(x)


def _is_array(x: Any) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype")


def _unwrap(obj: Any, what: str) -> dict[str, Any]:
  """Descend through `model` / `module` / `state_dict` wrappers to the flat state dict."""
  for _ in range(4):
    if not isinstance(obj, Mapping):
      break
    if any(_is_array(v) for v in obj.values()):
      break
    inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
    if inner is None:
      break
    obj = inner
  if not isinstance(obj, Mapping):
    raise ValueError(f"{what} does not hold a state dict (got {type(obj).__name__}).")
  state = {str(k): v for k, v in obj.items() if _is_array(v)}
  if not state:
    raise ValueError(f"{what} holds no arrays; top-level keys: {sorted(map(str, obj))[:20]}")
  # DistributedDataParallel / torch.compile prefixes.
  for prefix in ("module.", "_orig_mod."):
    if all(k.startswith(prefix) for k in state):
      state = {k[len(prefix) :]: v for k, v in state.items()}
  # mmaction-style detectors / recognisers (EVAD's): the ViT under `backbone.`, heads beside it.
  if any(k.startswith("backbone.patch_embed.") for k in state):
    state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
  return state


def _torch_load(path: str) -> Any:
  """`torch.load(weights_only=True)`: tensors and plain containers only, never pickled code.

  `argparse.Namespace` (the `args` entry of the official training checkpoints) is allowed:
  rebuilding it only sets attributes.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
      f"reading {path} needs torch (pip install torch); "
      "a .safetensors file needs only the safetensors package."
    ) from e
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    lines = str(e).strip().splitlines()
    detail = next(
      (ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0] if lines else ""
    )
    raise UnsafeCheckpointError(
      f"{path} holds non-tensor pickled objects, so loading it was refused: unpickling them "
      f"could run arbitrary code ({detail.strip()}). Re-save only the state dict (e.g. "
      "torch.save({'model': model.state_dict()}, path)) or convert it to .safetensors."
    ) from e


def _load_safetensors(path: str) -> dict[str, Any]:
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

    return load_file(path)
  except (TypeError, ValueError):  # e.g. bfloat16, which plain numpy cannot hold
    from safetensors.torch import load_file as torch_load_file  # pylint: disable=g-import-not-at-top

    return torch_load_file(path)


def _read_directory(path: str) -> tuple[dict[str, Any], dict | None]:
  config = None
  config_path = os.path.join(path, "config.json")
  if os.path.exists(config_path):
    with open(config_path) as f:
      config = json.load(f)
  for index_name, loader in (
    ("model.safetensors.index.json", _load_safetensors),
    ("pytorch_model.bin.index.json", _torch_load),
  ):
    index_path = os.path.join(path, index_name)
    if os.path.exists(index_path):
      with open(index_path) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
      state: dict[str, Any] = {}
      for shard in shards:
        state.update(_unwrap(loader(os.path.join(path, shard)), shard))
      return state, config
  for name, loader in (
    ("model.safetensors", _load_safetensors),
    ("pytorch_model.bin", _torch_load),
  ):
    file_path = os.path.join(path, name)
    if os.path.exists(file_path):
      return _unwrap(loader(file_path), file_path), config
  raise FileNotFoundError(
    f"{path} is a directory without model.safetensors or pytorch_model.bin "
    "(a Hugging Face checkpoint directory is expected)."
  )


def read_state_dict(source: Any) -> tuple[dict[str, np.ndarray], dict | None]:
  """(flat state dict of numpy arrays, Hugging Face config dict or None) from any source."""
  config = None
  if isinstance(source, (str, os.PathLike)):
    path = os.fspath(source)
    if os.path.isdir(path):
      state, config = _read_directory(path)
    elif not os.path.exists(path):
      raise FileNotFoundError(f"checkpoint {path} does not exist.")
    elif path.endswith(".safetensors"):
      state = _unwrap(_load_safetensors(path), path)
    elif path.endswith(_TORCH_SUFFIXES):
      state = _unwrap(_torch_load(path), path)
    else:
      raise ValueError(
        f"unknown checkpoint format {path!r}: expected a .pth/.pt/.bin/.ckpt file, "
        "a .safetensors file or a Hugging Face directory."
      )
  elif isinstance(source, Mapping):
    state = _unwrap(source, "the state dict")
  else:
    raise TypeError(
      f"load_torch_checkpoint expects a path or a state dict; got {type(source).__name__}."
    )
  return {k: to_numpy(v) for k, v in state.items()}, config
