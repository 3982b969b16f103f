"""A model's forward pass as a file: StableHLO (`jax.export`) and, with jax2onnx, ONNX.

The serialized function takes the model's input, a float32 [B, T, H, W, 3] ImageNet- (or the
run's) normalized clip with T, H, W fixed at the model's clip, and returns a classifier's
logits [B, num_classes] or a pre-training model's encoder tokens [B, N, D]. The batch B is
symbolic in the StableHLO export (any B at call time) unless `batch_size` fixes it. Weights are
embedded as constants, so the file stands alone. `signature.json` beside it records the shapes,
the normalization and the versions. docs/tools.md shows the commands and how to call the files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE

__all__ = ["forward_fn", "load_stablehlo", "save_onnx", "save_stablehlo", "signature"]

STABLEHLO_FILE = "model.stablehlo"
ONNX_FILE = "model.onnx"
SIGNATURE_FILE = "signature.json"
PLATFORMS = ("cpu", "cuda", "tpu")


def forward_fn(model: VideoMAE | VideoClassifier):
  """video [B, T, H, W, 3] float32 -> logits [B, C] (classifier) or encoder tokens [B, N, D]."""
  graphdef, state = nnx.split(model)

  def forward(video):
    m = nnx.merge(graphdef, state)
    if isinstance(m, VideoClassifier):
      return m(video)[0]
    return m.encoder(video).astype(jnp.float32)

  return forward


def _input_shape(model) -> tuple[int, int, int, int]:
  (t, h, w), (pt, ph, pw) = model.grid, model.encoder.tubelet
  return t * pt, h * ph, w * pw, int(model.encoder.patch_embed.proj.kernel.shape[3])


def signature(model, *, batch_size: int | None, normalization: str, fmt: str) -> dict[str, Any]:
  """What the serialized function takes and returns, for `signature.json`."""
  batch = batch_size if batch_size else "B (any)"
  if isinstance(model, VideoClassifier):
    output = {"name": "logits", "shape": [batch, model.num_classes]}
  else:
    output = {
      "name": "encoder_tokens",
      "shape": [batch, model.encoder.num_tokens, model.encoder.dim],
    }
  return {
    "format": fmt,
    "model": type(model).__name__,
    "input": {
      "name": "video",
      "shape": [batch, *_input_shape(model)],
      "dtype": "float32",
      "layout": "[B, T, H, W, C], channels last",
      "normalization": normalization,
    },
    "output": {**output, "dtype": "float32"},
    "token_grid": list(model.grid),
    "versions": {"jax": jax.__version__},
  }


def _write_signature(directory: str, sig: dict[str, Any]) -> None:
  with open(os.path.join(directory, SIGNATURE_FILE), "w") as f:
    json.dump(sig, f, indent=1)


def save_stablehlo(
  model: VideoMAE | VideoClassifier,
  directory: str,
  *,
  batch_size: int | None = None,
  platforms: Sequence[str] = PLATFORMS,
  normalization: str = "imagenet",
) -> str:
  """Writes `directory/model.stablehlo` (`jax.export` serialized, lowered for `platforms`) and
  `signature.json`; returns the artifact's path. `batch_size` None: a symbolic batch."""
  shape = _input_shape(model)
  if batch_size:
    spec = jax.ShapeDtypeStruct((int(batch_size), *shape), jnp.float32)
  else:
    (b,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, *shape), jnp.float32)
  exported = jax.export.export(jax.jit(forward_fn(model)), platforms=tuple(platforms))(spec)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, STABLEHLO_FILE)
  with open(path, "wb") as f:
    f.write(exported.serialize())
  sig = signature(model, batch_size=batch_size, normalization=normalization, fmt="stablehlo")
  sig["platforms"] = list(platforms)
  sig["call"] = "jax.export.deserialize(open(path, 'rb').read()).call(video)"
  _write_signature(directory, sig)
  return path


def load_stablehlo(path: str):
  """The `jax.export.Exported` in `path` (a file or the directory `save_stablehlo` wrote); call
  it as `exported.call(video)`."""
  if os.path.isdir(path):
    path = os.path.join(path, STABLEHLO_FILE)
  with open(path, "rb") as f:
    return jax.export.deserialize(bytearray(f.read()))


def save_onnx(
  model: VideoMAE | VideoClassifier,
  directory: str,
  *,
  batch_size: int | None = None,
  normalization: str = "imagenet",
) -> str:
  """Writes `directory/model.onnx` with jax2onnx (`model.onnx.data` beside it holds large
  weights) and `signature.json`; returns the path. jax2onnx is not a dependency of mgvm: its
  package pins an old orbax-checkpoint, so it is installed without its dependencies
  (docs/tools.md, `requirements-onnx.txt`)."""
  try:
    from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
      "--format onnx needs jax2onnx, onnx and onnxruntime: pip install --no-deps -r "
      "requirements-onnx.txt (jax2onnx's own pins conflict with orbax-checkpoint; docs/tools.md)"
    ) from e
  # onnx_ir warns once per shape tensor it cannot type; the graph is complete without them.
  logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, ONNX_FILE)
  shape = (int(batch_size) if batch_size else "B", *_input_shape(model))
  to_onnx(forward_fn(model), [shape], return_mode="file", output_path=path)
  _write_signature(
    directory, signature(model, batch_size=batch_size, normalization=normalization, fmt="onnx")
  )
  return path


def max_difference(model, run, batch: int = 2, seed: int = 0) -> float:
  """Max |live model - `run`(video)| on a random normalized batch: the check after an export."""
  video = np.asarray(
    jax.random.normal(jax.random.key(seed), (batch, *_input_shape(model))), np.float32
  )
  live = np.asarray(jax.jit(forward_fn(model))(video))
  return float(np.max(np.abs(live - np.asarray(run(video)))))
