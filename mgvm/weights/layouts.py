"""Hugging Face <-> official VideoMAE key layouts, and PyTorch -> Flax parameter layout.

The official layout (VideoMAE / VideoMAE-v2 / MGMAE / EVEREST) names the encoder
`patch_embed.proj`, `blocks.{i}.attn.qkv` + `attn.q_bias` / `attn.v_bias`; pre-training
checkpoints prefix it with `encoder.` and carry `encoder_to_decoder`, `mask_token` and
`decoder.*`, fine-tuned ones `fc_norm` and `head`. The Hugging Face `transformers` layout
names it `videomae.embeddings.patch_embeddings`, `videomae.encoder.layer.{i}.attention.
attention.query/key/value`, ... Both are read into the official pre-training names
(`Entry`s that remember their checkpoint keys for error messages).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import numpy as np

from mgvm.models.vit import sinusoid_table

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
_HF_QKV = {
  "attention.attention.query.weight": 0,
  "attention.attention.key.weight": 1,
  "attention.attention.value.weight": 2,
}


@dataclasses.dataclass
class Entry:
  """One array on its way into the model, with where it came from (for error messages)."""

  value: np.ndarray
  source: str  # the checkpoint key(s)
  source_shape: tuple[int, ...]


def make_entry(value: np.ndarray, source: str) -> Entry:
  """An `Entry` whose stored shape is the value's own."""
  return Entry(value, source, tuple(value.shape))


def detect_layout(state: Mapping[str, np.ndarray]) -> str:
  """ "hf" or "official" from the keys; an unknown layout fails listing the first keys."""
  if any(k.startswith("videomae.embeddings.") for k in state):
    return "hf"
  if any(k.endswith("patch_embed.proj.weight") for k in state):
    return "official"
  raise ValueError(
    "unrecognised checkpoint layout: expected the official VideoMAE keys "
    "(…patch_embed.proj.weight, blocks.{i}.attn.qkv.weight) or the Hugging Face keys "
    f"(videomae.embeddings.patch_embeddings.projection.weight, …). First keys: {sorted(state)[:8]}"
  )


def canonical_from_hf(state: Mapping[str, np.ndarray]) -> dict[str, Entry]:
  """Hugging Face names -> official pre-training names (`encoder.blocks.{i}.attn.qkv.weight`, ...)."""
  out: dict[str, Entry] = {}
  qkv: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
  for key, value in state.items():
    m = _HF_LAYER_RE.match(key)
    if m:
      block = (
        "encoder.blocks." if m.group(1).startswith("videomae") else "decoder.blocks."
      ) + m.group(2)
      rest = m.group(3)
      if rest in _HF_QKV:
        qkv.setdefault(block, {})[_HF_QKV[rest]] = (key, value)
      elif rest == "attention.attention.key.bias":
        if np.any(value != 0):
          raise ValueError(
            f"{key} is a non-zero key bias; VideoMAE's key projection is bias-free "
            "(only q and v carry biases), so this checkpoint is not a VideoMAE."
          )
      elif rest in _HF_LAYER_RENAMES:
        out[f"{block}.{_HF_LAYER_RENAMES[rest]}"] = make_entry(value, key)
      else:
        out[key] = make_entry(value, key)  # reported as unexpected
      continue
    for old, new in _HF_TOP_RENAMES.items():
      if key.startswith(old):
        out[new + key[len(old) :]] = make_entry(value, key)
        break
    else:
      out[key] = make_entry(
        value, key
      )  # encoder_to_decoder, mask_token, decoder.norm/head, fc_norm
  for block, parts in qkv.items():
    if len(parts) == 3:
      keys = [parts[i][0] for i in range(3)]
      value = np.concatenate([parts[i][1] for i in range(3)], axis=0)
      out[f"{block}.attn.qkv.weight"] = Entry(value, " + ".join(keys), tuple(value.shape))
    else:  # incomplete q/k/v: leave the raw keys to be reported as unexpected
      for key, value in parts.values():
        out[key] = make_entry(value, key)
  return out


def canonical_from_official(state: Mapping[str, np.ndarray]) -> dict[str, Entry]:
  """Official names; a fine-tuned model's encoder keys get the `encoder.` prefix."""
  out: dict[str, Entry] = {}
  for key, value in state.items():
    name = key
    if key.split(".")[0] in ("patch_embed", "blocks", "norm", "pos_embed"):
      name = "encoder." + key
    out[name] = make_entry(value, key)
  return out


def drop_sinusoid_pos_embed(entries: dict[str, Entry]) -> bool:
  """Drops a stored fixed sinusoid table (the model computes its own); a learned table stays as
  `encoder.pos_embed` [N, D]. Returns whether the checkpoint has a learned table."""
  entry = entries.get("encoder.pos_embed")
  if entry is None:
    return False
  table = entry.value.reshape(-1, entry.value.shape[-1])
  if np.allclose(table, sinusoid_table(*table.shape), atol=1e-4):
    del entries["encoder.pos_embed"]
    return False
  entries["encoder.pos_embed"] = dataclasses.replace(entry, value=table)
  return True


def to_model_name(name: str, entry: Entry) -> tuple[str, Entry]:
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
      entry, value=np.ascontiguousarray(v.transpose(2, 3, 4, 1, 0))
    )
  return name, entry


def hf_name(name: str) -> str:
  """Official pre-training name -> Hugging Face name (q/k/v split handled by the caller)."""
  m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$", name)
  if m:
    layer = "videomae.encoder.layer." if m.group(1) == "encoder" else "decoder.decoder_layers."
    renames = {
      "attn.q_bias": "attention.attention.query.bias",
      "attn.v_bias": "attention.attention.value.bias",
    }
    renames.update({v: k for k, v in _HF_LAYER_RENAMES.items() if "attention.attention" not in k})
    if m.group(3) not in renames:
      raise ValueError(f"{name} has no Hugging Face VideoMAE equivalent (layer scale?).")
    return f"{layer}{m.group(2)}.{renames[m.group(3)]}"
  for hf, official in _HF_TOP_RENAMES.items():
    if name.startswith(official):
      return hf + name[len(official) :]
  return name
