"""Import and export model weights: PyTorch checkpoints (official and Hugging Face) and plain dicts.

`load_torch_checkpoint(source, kind=...)` reads

- the official VideoMAE / VideoMAE-v2 / MGMAE / EVEREST layout (`patch_embed.proj.weight`,
  `blocks.{i}.attn.qkv.weight` + `attn.q_bias` / `attn.v_bias`; pre-training checkpoints
  prefix the encoder with `encoder.` and carry `encoder_to_decoder`, `mask_token`,
  `decoder.*`; fine-tuned ones carry `fc_norm` and `head`), and
- the Hugging Face `transformers` VideoMAE layout (`videomae.embeddings.patch_embeddings`,
  `videomae.encoder.layer.{i}.attention.attention.query/key/value`, ...),

from a `.pth`/`.pt`/`.bin` file (unpickled with `weights_only=True`: pickled code is never
run), a `.safetensors` file, a Hugging Face directory (`config.json` + weights) or an
in-memory state dict, and builds a `VideoMAE` or `VideoClassifier` of the detected size.

Every assignment goes through one checker that compares the converted arrays with the
model's parameter tree and raises a single `CheckpointMismatchError` listing all missing
parameters, unexpected checkpoint keys and shape mismatches.

`export_params` / `import_params` move weights as a plain nested dict of numpy arrays (for
orbax or any JAX project); `to_torch_state_dict` writes the official or the Hugging Face
layout back out.

torch is imported lazily, only by the functions that read `.pth` files, convert torch
tensors or write torch state dicts, so this module imports without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.models.vit import sinusoid_table

__all__ = ["CheckpointMismatchError", "UnsafeCheckpointError", "export_params", "import_params",
           "load_torch_checkpoint", "read_state_dict", "to_torch_state_dict"]

# Official head counts by width (ALGORITHMS §1.1), used when neither config.json nor the
# caller names them.
ENCODER_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16}
DECODER_HEADS = {192: 3, 384: 6, 512: 8, 640: 8}

_WRAPPERS = ("model", "module", "state_dict")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class CheckpointMismatchError(ValueError):
  """The converted checkpoint does not fit the model's parameter tree."""


class UnsafeCheckpointError(ValueError):
  """A pickled checkpoint holds objects other than tensors and plain containers."""


@dataclasses.dataclass
class _Entry:
  """One array on its way into the model, with where it came from (for error messages)."""
  value: np.ndarray
  source: str  # the checkpoint key(s)
  source_shape: tuple[int, ...]


# ----------------------------------------------------------------------------- reading


def _to_numpy(x: Any) -> np.ndarray:
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
      state = {k[len(prefix):]: v for k, v in state.items()}
  return state


def _torch_load(path: str) -> Any:
  """`torch.load(weights_only=True)`: tensors and plain containers only, never pickled code.

  `argparse.Namespace` (the `args` entry of the official training checkpoints) is allowed:
  rebuilding it only sets attributes.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs torch (pip install torch); "
                      "a .safetensors file needs only the safetensors package.") from e
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    lines = str(e).strip().splitlines()
    detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln),
                  lines[0] if lines else "")
    raise UnsafeCheckpointError(
        f"{path} holds non-tensor pickled objects, so loading it was refused: unpickling them "
        f"could run arbitrary code ({detail.strip()}). Re-save only the state dict (e.g. "
        "torch.save({'model': model.state_dict()}, path)) or convert it to .safetensors.") from e


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
  for index_name, loader in (("model.safetensors.index.json", _load_safetensors),
                             ("pytorch_model.bin.index.json", _torch_load)):
    index_path = os.path.join(path, index_name)
    if os.path.exists(index_path):
      with open(index_path) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
      state: dict[str, Any] = {}
      for shard in shards:
        state.update(_unwrap(loader(os.path.join(path, shard)), shard))
      return state, config
  for name, loader in (("model.safetensors", _load_safetensors),
                       ("pytorch_model.bin", _torch_load)):
    file_path = os.path.join(path, name)
    if os.path.exists(file_path):
      return _unwrap(loader(file_path), file_path), config
  raise FileNotFoundError(f"{path} is a directory without model.safetensors or pytorch_model.bin "
                          "(a Hugging Face checkpoint directory is expected).")


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
      raise ValueError(f"unknown checkpoint format {path!r}: expected a .pth/.pt/.bin/.ckpt file, "
                       "a .safetensors file or a Hugging Face directory.")
  elif isinstance(source, Mapping):
    state = _unwrap(source, "the state dict")
  else:
    raise TypeError("load_torch_checkpoint expects a path or a state dict; got "
                    f"{type(source).__name__}.")
  return {k: _to_numpy(v) for k, v in state.items()}, config


# ----------------------------------------------------------------------------- layouts

# Hugging Face per-layer names -> official per-block names (q/k/v handled separately).
_HF_LAYER_RENAMES = {
    "attention.attention.q_bias": "attn.q_bias",  # transformers < 5
    "attention.attention.v_bias": "attn.v_bias",
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
_HF_TOP_RENAMES = {
    "videomae.embeddings.patch_embeddings.projection.": "encoder.patch_embed.proj.",
    "videomae.layernorm.": "encoder.norm.",
    "classifier.": "head.",
}
_HF_LAYER_RE = re.compile(r"^(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$")
_HF_QKV = {"attention.attention.query.weight": 0, "attention.attention.key.weight": 1,
           "attention.attention.value.weight": 2}


def _detect_layout(state: Mapping[str, np.ndarray]) -> str:
  if any(k.startswith("videomae.embeddings.") for k in state):
    return "hf"
  if any(k.endswith("patch_embed.proj.weight") for k in state):
    return "official"
  raise ValueError(
      "unrecognised checkpoint layout: expected the official VideoMAE keys "
      "(…patch_embed.proj.weight, blocks.{i}.attn.qkv.weight) or the Hugging Face keys "
      f"(videomae.embeddings.patch_embeddings.projection.weight, …). First keys: {sorted(state)[:8]}")


def _entry(value: np.ndarray, source: str) -> _Entry:
  return _Entry(value, source, tuple(value.shape))


def _canonical_from_hf(state: Mapping[str, np.ndarray]) -> dict[str, _Entry]:
  """Hugging Face names -> official pre-training names (`encoder.blocks.{i}.attn.qkv.weight`, ...)."""
  out: dict[str, _Entry] = {}
  qkv: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
  for key, value in state.items():
    m = _HF_LAYER_RE.match(key)
    if m:
      block = ("encoder.blocks." if m.group(1).startswith("videomae") else "decoder.blocks.") + m.group(2)
      rest = m.group(3)
      if rest in _HF_QKV:
        qkv.setdefault(block, {})[_HF_QKV[rest]] = (key, value)
      elif rest == "attention.attention.key.bias":
        if np.any(value != 0):
          raise ValueError(f"{key} is a non-zero key bias; VideoMAE's key projection is bias-free "
                           "(only q and v carry biases), so this checkpoint is not a VideoMAE.")
      elif rest in _HF_LAYER_RENAMES:
        out[f"{block}.{_HF_LAYER_RENAMES[rest]}"] = _entry(value, key)
      else:
        out[key] = _entry(value, key)  # reported as unexpected
      continue
    for old, new in _HF_TOP_RENAMES.items():
      if key.startswith(old):
        out[new + key[len(old):]] = _entry(value, key)
        break
    else:
      out[key] = _entry(value, key)  # encoder_to_decoder, mask_token, decoder.norm/head, fc_norm
  for block, parts in qkv.items():
    if len(parts) == 3:
      keys = [parts[i][0] for i in range(3)]
      value = np.concatenate([parts[i][1] for i in range(3)], axis=0)
      out[f"{block}.attn.qkv.weight"] = _Entry(value, " + ".join(keys), tuple(value.shape))
    else:  # incomplete q/k/v: leave the raw keys to be reported as unexpected
      for key, value in parts.values():
        out[key] = _entry(value, key)
  return out


def _canonical_from_official(state: Mapping[str, np.ndarray]) -> dict[str, _Entry]:
  """Official names; a fine-tuned model's encoder keys get the `encoder.` prefix."""
  out: dict[str, _Entry] = {}
  for key, value in state.items():
    name = key
    if key.split(".")[0] in ("patch_embed", "blocks", "norm", "pos_embed"):
      name = "encoder." + key
    out[name] = _entry(value, key)
  return out


def _drop_sinusoid_pos_embed(entries: dict[str, _Entry]) -> None:
  """A stored fixed sinusoid table is redundant; a learned position table is not supported."""
  entry = entries.get("encoder.pos_embed")
  if entry is None:
    return
  table = entry.value.reshape(-1, entry.value.shape[-1])
  if not np.allclose(table, sinusoid_table(*table.shape), atol=1e-4):
    raise ValueError(f"{entry.source} {entry.source_shape} is a learned position embedding; mgvm "
                     "uses the reference's fixed 1-D sinusoid table only.")
  del entries["encoder.pos_embed"]


def _to_model_name(name: str, entry: _Entry) -> tuple[str, _Entry]:
  """Official name + PyTorch layout -> mgvm parameter path + Flax layout."""
  head, _, last = name.rpartition(".")
  if last != "weight":
    return name, entry
  v = entry.value
  if v.ndim == 1:  # LayerNorm
    return f"{head}.scale", entry
  if v.ndim == 2:  # Linear [out, in] -> [in, out]
    return f"{head}.kernel", dataclasses.replace(entry, value=np.ascontiguousarray(v.T))
  if v.ndim == 5:  # Conv3d [D, C, kt, kh, kw] -> [kt, kh, kw, C, D]
    return f"{head}.kernel", dataclasses.replace(
        entry, value=np.ascontiguousarray(v.transpose(2, 3, 4, 1, 0)))
  return name, entry


# ----------------------------------------------------------------------------- the checker


def _model_params(model: nnx.Module) -> dict[str, nnx.Variable]:
  return {".".join(str(p) for p in path): var
          for path, var in nnx.iter_graph(model) if isinstance(var, nnx.Param)}


def _assign(model: nnx.Module, entries: Mapping[str, _Entry], *, allow_missing: tuple[str, ...] = (),
            what: str = "checkpoint") -> None:
  """Check `entries` against the model's params (one error listing every problem), then assign."""
  params = _model_params(model)
  missing = [p for p in params if p not in entries and not p.startswith(allow_missing)]
  unexpected = [n for n in entries if n not in params]
  mismatched = []
  for name, entry in entries.items():
    var = params.get(name)
    if var is not None and tuple(var.get_value().shape) != tuple(entry.value.shape):
      stored = ("" if entry.source_shape == tuple(entry.value.shape)
                else f" (stored as {entry.source_shape})")
      mismatched.append(f"{name}: model shape {tuple(var.get_value().shape)}, {what} key "
                        f"'{entry.source}' shape {tuple(entry.value.shape)}{stored}")
  if missing or unexpected or mismatched:
    lines = [f"the {what} does not match {type(model).__name__}:"]
    if missing:
      lines.append(f"  missing parameters ({len(missing)}; in the model, not in the {what}):")
      lines += [f"    {p} {tuple(params[p].get_value().shape)}" for p in missing]
    if unexpected:
      lines.append(f"  unexpected {what} keys ({len(unexpected)}; no model parameter):")
      lines += [f"    '{entries[n].source}' {entries[n].source_shape}"
                + (f" -> {n}" if n != entries[n].source else "") for n in unexpected]
    if mismatched:
      lines.append(f"  shape mismatches ({len(mismatched)}):")
      lines += [f"    {line}" for line in mismatched]
    raise CheckpointMismatchError("\n".join(lines))
  for name, entry in entries.items():
    var = params[name]
    var.set_value(jnp.asarray(entry.value, dtype=var.get_value().dtype))


# ----------------------------------------------------------------------------- size detection


def _block_count(entries: Mapping[str, _Entry], prefix: str) -> int:
  pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
  ids = {int(m.group(1)) for n in entries if (m := pat.match(n))}
  if ids and ids != set(range(max(ids) + 1)):
    raise ValueError(f"{prefix}: block indices {sorted(ids)} are not contiguous from 0.")
  return len(ids)


def _mlp_ratio(dim: int, hidden: int) -> float:
  ratio = hidden / dim
  return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _pick(name: str, from_config, from_arg, fallback, *, conflict_is_error: bool):
  if from_config is not None and from_arg is not None and from_config != from_arg:
    if conflict_is_error:
      raise ValueError(f"{name}={from_arg!r} contradicts config.json ({from_config!r}).")
    return from_arg
  if from_config is not None:
    return from_config
  if from_arg is not None:
    return from_arg
  return fallback


def _heads(what: str, dim: int, from_config, from_arg, table: Mapping[int, int], arg_name: str):
  heads = _pick(arg_name, from_config, from_arg, table.get(dim), conflict_is_error=True)
  if heads is None:
    if dim % 64:
      raise ValueError(f"cannot infer the number of {what} attention heads for width {dim} "
                       f"(not an official size and not a multiple of 64); pass {arg_name}=.")
    heads = dim // 64
  if dim % heads:
    raise ValueError(f"{what} width {dim} is not divisible by {arg_name}={heads}.")
  return int(heads)


def _image_size(value):
  if value is None or isinstance(value, int):
    return value
  value = tuple(int(v) for v in value)
  return value[0] if len(set(value)) == 1 else value


# ----------------------------------------------------------------------------- public API


def load_torch_checkpoint(source: Any, *, kind: str = "pretrain", num_classes: int | None = None,
                          num_frames: int | None = None, image_size: Any = None,
                          num_heads: int | None = None, decoder_heads: int | None = None,
                          dtype=jnp.float32, rngs: nnx.Rngs | int | None = None,
                          **model_kwargs) -> VideoMAE | VideoClassifier:
  """Build a `VideoMAE` (`kind="pretrain"`) or `VideoClassifier` (`kind="classifier"`) from a checkpoint.

  Args:
    source: a `.pth`/`.pt`/`.bin`/`.ckpt` file, a `.safetensors` file, a Hugging Face
      directory (`config.json` + `model.safetensors` or `pytorch_model.bin`), or a state
      dict of torch tensors / numpy arrays; nesting under `model`, `module` or `state_dict`
      is unwrapped. Official and Hugging Face layouts are detected from the keys.
    kind: "pretrain" needs a checkpoint with a decoder. "classifier" from a fine-tuned
      (mean-pooling) checkpoint takes `num_classes` from its head; from a pre-training or
      encoder-only checkpoint it loads the encoder (the pre-training final norm is dropped,
      as the reference's mean-pooling model ignores it) and initialises `fc_norm`/`head`
      fresh, which needs `num_classes`.
    num_frames, image_size: the clip the model is built for; config.json's values unless
      given, else 16 / 224 (the fixed sinusoid positions fit any size).
    num_heads, decoder_heads: heads, when config.json does not give them; else the
      official table by width (384→6, 768→12, 1024/1280→16; decoder 192→3, 384→6,
      512/640→8); else width // 64.
    dtype: compute dtype (params stay float32).
    rngs: initialises parameters the checkpoint does not provide (default `nnx.Rngs(0)`).
      When the checkpoint provides every parameter and `rngs` is None, the model is
      built with `nnx.eval_shape` and nothing is initialised.
    **model_kwargs: passed to the model (e.g. `drop_path_rate`, `fc_drop_rate`).

  Dims, depth, tubelet, channels, MLP ratio, q/v biases and layer scale come from the
  weights. The Hugging Face `layer_norm_eps` is not read: mgvm uses the reference's 1e-6.

  Raises:
    UnsafeCheckpointError: a pickled file holds objects other than tensors.
    CheckpointMismatchError: the weights do not fit the model (lists every problem).
    ValueError: an unusable checkpoint for `kind` (no decoder, no mean pooling, ...).
  """
  if kind not in ("pretrain", "classifier"):
    raise ValueError(f"kind must be 'pretrain' or 'classifier'; got {kind!r}.")
  state, config = read_state_dict(source)
  config = config or {}
  if any(k.startswith("embeddings.patch_embeddings.") for k in state):  # bare VideoMAEModel
    state = {"videomae." + k: v for k, v in state.items()}
  layout = _detect_layout(state)
  entries = _canonical_from_hf(state) if layout == "hf" else _canonical_from_official(state)
  _drop_sinusoid_pos_embed(entries)

  has_decoder = any(n.startswith(("decoder.", "encoder_to_decoder.")) or n == "mask_token"
                    for n in entries)
  has_head = "head.weight" in entries
  allow_missing: tuple[str, ...] = ()
  if kind == "pretrain":
    if not has_decoder:
      raise ValueError(f"kind='pretrain' needs a pre-training checkpoint, but this {layout} "
                       "checkpoint has no decoder (a fine-tuned or encoder-only model?); "
                       "use kind='classifier'.")
    if "encoder.norm.weight" not in entries:
      if layout == "hf":
        raise ValueError(
            "this Hugging Face pre-training checkpoint has no videomae.layernorm (its config "
            "has use_mean_pooling=True), so its encoder output reaches the decoder without the "
            "final LayerNorm, unlike the reference VideoMAE that mgvm implements.")
      raise ValueError("this pre-training checkpoint has no encoder.norm (final encoder "
                       "LayerNorm), which the reference VideoMAE has.")
  else:
    if has_head:
      if "fc_norm.weight" not in entries or config.get("use_mean_pooling") is False:
        raise ValueError(
            "this classifier checkpoint does not use mean pooling (no fc_norm; Hugging Face "
            "use_mean_pooling=False or the official `norm` + first-token head); mgvm's "
            "VideoClassifier supports only mean pooling + fc_norm.")
      head_classes = int(entries["head.weight"].value.shape[0])
      if num_classes is not None and num_classes != head_classes:
        raise ValueError(f"num_classes={num_classes} but the checkpoint's head has {head_classes} "
                         "classes.")
      num_classes = head_classes
    else:
      if num_classes is None:
        raise ValueError("kind='classifier' from a pre-training (or encoder-only) checkpoint "
                         "initialises a new head: pass num_classes=.")
      allow_missing = ("fc_norm.", "head.")
    for name in list(entries):  # pre-training-only parts
      if (name.startswith(("decoder.", "encoder_to_decoder.", "encoder.norm."))
          or name == "mask_token"):
        del entries[name]

  # --- sizes from the weights
  patch = entries.get("encoder.patch_embed.proj.weight")
  if patch is None or patch.value.ndim != 5:
    raise ValueError("the checkpoint has no Conv3d patch embedding "
                     "(patch_embed.proj.weight / patch_embeddings.projection.weight).")
  dim, in_channels, *tubelet = (int(s) for s in patch.value.shape)
  depth = _block_count(entries, "encoder.blocks")
  if depth == 0:
    raise ValueError("the checkpoint has no encoder blocks.")
  fc1 = entries.get("encoder.blocks.0.mlp.fc1.weight")
  mlp_ratio = _mlp_ratio(dim, int(fc1.value.shape[0])) if fc1 is not None else 4.0
  detected: dict[str, Any] = dict(
      dim=dim, depth=depth, tubelet=tuple(tubelet), in_channels=in_channels, mlp_ratio=mlp_ratio,
      qkv_bias="encoder.blocks.0.attn.q_bias" in entries,
      layer_scale_init=1.0 if "encoder.blocks.0.gamma_1" in entries else 0.0)
  detected["num_heads"] = _heads("encoder", dim, config.get("num_attention_heads"), num_heads,
                                 ENCODER_HEADS, "num_heads")
  detected["num_frames"] = int(_pick("num_frames", config.get("num_frames"), num_frames, 16,
                                     conflict_is_error=False))
  detected["image_size"] = _image_size(_pick("image_size", _image_size(config.get("image_size")),
                                             _image_size(image_size), 224, conflict_is_error=False))
  if kind == "pretrain":
    e2d = entries.get("encoder_to_decoder.weight")
    mask_token = entries.get("mask_token")
    if e2d is not None:
      decoder_dim = int(e2d.value.shape[0])
    elif mask_token is not None:
      decoder_dim = int(mask_token.value.shape[-1])
    else:
      raise ValueError("the pre-training checkpoint has neither encoder_to_decoder.weight nor "
                       "mask_token, so the decoder width is unknown.")
    decoder_depth = _block_count(entries, "decoder.blocks")
    dfc1 = entries.get("decoder.blocks.0.mlp.fc1.weight")
    if dfc1 is not None and int(decoder_dim * mlp_ratio) != int(dfc1.value.shape[0]):
      raise ValueError(f"the decoder's MLP width {dfc1.value.shape[0]} is not "
                       f"{mlp_ratio:g} x {decoder_dim} (the encoder's ratio); mgvm's VideoMAE "
                       "uses one MLP ratio for encoder and decoder.")
    detected.update(
        decoder_dim=decoder_dim, decoder_depth=decoder_depth,
        decoder_heads=_heads("decoder", decoder_dim, config.get("decoder_num_attention_heads"),
                             decoder_heads, DECODER_HEADS, "decoder_heads"))
  elif decoder_heads is not None:
    raise ValueError("decoder_heads= applies to kind='pretrain' only.")

  kwargs = {**detected, **model_kwargs}
  if kind == "pretrain":
    build = lambda r: VideoMAE(None, dtype=dtype, rngs=r, **kwargs)
  else:
    build = lambda r: VideoClassifier(None, num_classes=num_classes, dtype=dtype, rngs=r, **kwargs)
  if allow_missing or rngs is not None:
    # Some parameters start fresh: initialise for real.
    if rngs is None:
      rngs = nnx.Rngs(0)
    elif isinstance(rngs, int):
      rngs = nnx.Rngs(rngs)
    model = build(rngs)
  else:
    # Every parameter comes from the checkpoint: build shapes only (no initialisation, which
    # is slow and memory-hungry for large models), then fill in the arrays.
    model = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
  _assign(model, dict(_to_model_name(n, e) for n, e in entries.items()),
          allow_missing=allow_missing)
  leftover = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_flatten_with_path(
      nnx.state(model))[0] if isinstance(x, jax.ShapeDtypeStruct)]
  if leftover:  # a non-parameter variable the checkpoint cannot provide
    model = build(nnx.Rngs(0))
    _assign(model, dict(_to_model_name(n, e) for n, e in entries.items()))
  return model


def export_params(model: nnx.Module) -> dict[str, Any]:
  """The model's parameters as a nested dict of numpy arrays, keyed by path (`"blocks" -> "0" -> ...`)."""
  out: dict[str, Any] = {}
  for path, var in _model_params(model).items():
    if isinstance(var.get_value(), jax.ShapeDtypeStruct):
      raise ValueError(f"{path} is abstract (a model from nnx.eval_shape); import_params first.")
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.array(var.get_value())
  return out


def _flatten(tree: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
  flat: dict[str, Any] = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, Mapping):
      flat.update(_flatten(v, name + "."))
    else:
      flat[name] = v.get_value() if isinstance(v, nnx.Variable) else v
  return flat


def import_params(model: nnx.Module, params: Mapping[str, Any]) -> nnx.Module:
  """Assign `params` (as `export_params` gives, or flat `{"a.b.kernel": array}`) in place.

  Raises `CheckpointMismatchError` listing every missing, unexpected and mis-shaped entry;
  the model is left unchanged then. Returns the model.
  """
  entries = {name: _entry(np.asarray(_to_numpy(v)), name) for name, v in _flatten(params).items()}
  _assign(model, entries, what="params dict")
  return model


# ----------------------------------------------------------------------------- export to torch


def _hf_name(name: str) -> str:
  """Official pre-training name -> Hugging Face name (q/k/v split handled by the caller)."""
  m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$", name)
  if m:
    layer = ("videomae.encoder.layer." if m.group(1) == "encoder" else "decoder.decoder_layers.")
    renames = {"attn.q_bias": "attention.attention.query.bias",
               "attn.v_bias": "attention.attention.value.bias"}
    renames.update({v: k for k, v in _HF_LAYER_RENAMES.items() if "attention.attention" not in k})
    if m.group(3) not in renames:
      raise ValueError(f"{name} has no Hugging Face VideoMAE equivalent (layer scale?).")
    return f"{layer}{m.group(2)}.{renames[m.group(3)]}"
  for hf, official in _HF_TOP_RENAMES.items():
    if name.startswith(official):
      return hf + name[len(official):]
  return name


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
  for path, var in _model_params(model).items():
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
        name = name[len("encoder."):]
      out[name] = value
  else:
    for name, value in official.items():
      m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.attn\.qkv\.weight$", name)
      if m:
        layer = ("videomae.encoder.layer." if m.group(1) == "encoder"
                 else "decoder.decoder_layers.") + m.group(2) + ".attention.attention."
        for part, chunk in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
          out[f"{layer}{part}.weight"] = np.ascontiguousarray(chunk)
      else:
        out[_hf_name(name)] = value
  return {k: torch.from_numpy(v) for k, v in out.items()}
