"""python -m mgvm.export --checkpoint SRC --format hf|official|stablehlo|onnx --out PATH

Writes a model (an mgvm workdir's latest checkpoint, an official `.pth` or a Hugging Face
directory) in another format, then reads the result back and checks it:
- `hf`: a `transformers` VideoMAE directory (config.json + model.safetensors) that
  `VideoMAEForVideoClassification` / `VideoMAEForPreTraining.from_pretrained` load; checked by
  reloading it into mgvm (every parameter equal).
- `official`: the official VideoMAE `.pth` layout (`{"model": state_dict}`); checked the same way.
- `stablehlo`: the forward pass serialized with `jax.export` (weights embedded; symbolic batch
  unless `--batch-size`) plus signature.json; checked by running the reloaded artifact against
  the live model.
- `onnx`: the same through jax2onnx (installed apart: `pip install --no-deps -r
  requirements-onnx.txt`), checked with onnxruntime.
`--num-frames` / `--image-size` export the model for another clip (positions rebuilt or
interpolated, logged). docs/tools.md has examples and their output.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

FORMATS = ("hf", "official", "stablehlo", "onnx")


def _params(model) -> dict[str, np.ndarray]:
  from mgvm.trees import flatten_dict
  from mgvm.weights import export_params

  return flatten_dict(export_params(model))


def params_difference(a, b) -> float:
  """Max |Δ| over the parameters of two models of the same tree (a ValueError names a path that
  only one of them has or whose shapes differ)."""
  pa, pb = _params(a), _params(b)
  if pa.keys() != pb.keys():
    raise ValueError(f"parameters differ in name: {sorted(pa.keys() ^ pb.keys())[:8]}")
  worst = 0.0
  for name in pa:
    if pa[name].shape != pb[name].shape:
      raise ValueError(f"{name}: shape {pa[name].shape} written, {pb[name].shape} read back")
    worst = max(worst, float(np.max(np.abs(pa[name] - pb[name]), initial=0.0)))
  return worst


def export(
  checkpoint: str,
  fmt: str,
  out: str,
  *,
  num_frames: int | None = None,
  image_size: int | None = None,
  num_heads: int | None = None,
  batch_size: int | None = None,
  labels: str = "",
  platforms: Sequence[str] = ("cpu", "cuda", "tpu"),
  check: bool = True,
  log=print,
) -> dict:
  """Writes `checkpoint`'s model to `out` in `fmt`; returns {"path", "check"} (the check's max
  |Δ|, parameters for hf / official, outputs for stablehlo / onnx)."""
  from mgvm.weights import serialize
  from mgvm.weights.checkpoints import load_model
  from mgvm.weights.hf_export import save_hf
  from mgvm.weights.torch_export import save_official
  from mgvm.weights.torch_import import load_torch_checkpoint

  if fmt not in FORMATS:
    raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
  loaded = load_model(
    checkpoint, num_frames=num_frames, image_size=image_size, num_heads=num_heads, log=log
  )
  model = loaded.model
  names: Sequence[str] = ()
  if loaded.kind == "classifier":
    names = loaded.label_names(labels)
  elif labels:
    raise ValueError(f"--labels names a classifier's classes; {checkpoint} is a {loaded.kind}")
  kind = "classifier" if loaded.kind == "classifier" else "pretrain"
  result: dict = {}
  if fmt in ("hf", "official"):
    if fmt == "hf":
      path = save_hf(model, out, class_names=names)
    else:
      if not out.endswith((".pth", ".pt")):
        raise ValueError(f"--format official writes one .pth file; --out {out!r} is not one")
      path = save_official(model, out)
    result["path"] = path
    if check:
      back = load_torch_checkpoint(
        path,
        kind=kind,
        num_frames=loaded.num_frames,
        image_size=loaded.image_size,
        heads_by_width={model.encoder.dim: model.encoder.num_heads},
        decoder_heads_by_width=(
          {model.spec.decoder_dim: model.spec.decoder_heads} if kind == "pretrain" else None
        ),
      )
      result["check"] = params_difference(model, back)
      log(f"check: {path} read back into mgvm, max |parameter difference| {result['check']:.1e}")
  else:
    if fmt == "stablehlo":
      path = serialize.save_stablehlo(
        model,
        out,
        batch_size=batch_size,
        platforms=platforms,
        normalization=loaded.normalization,
      )
      run = serialize.load_stablehlo(path).call
    else:
      path = serialize.save_onnx(
        model, out, batch_size=batch_size, normalization=loaded.normalization
      )
      run = _onnx_runner(path)
    result["path"] = path
    if check:
      batch = batch_size or 2
      result["check"] = serialize.max_difference(model, run, batch=batch)
      log(
        f"check: {path} reloaded and run on a random batch of {batch}, max |output difference| "
        f"vs the live model {result['check']:.1e}"
      )
  log(f"wrote {fmt} export of the {loaded.kind} from {loaded.source} to {result['path']}")
  return result


def _onnx_runner(path: str):
  try:
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("checking an ONNX export needs onnxruntime (or pass --no-check)") from e
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  name = session.get_inputs()[0].name
  return lambda video: session.run(None, {name: video})[0]


def main(argv: Sequence[str] | None = None) -> dict:
  from mgvm.cli import add_model_args

  p = argparse.ArgumentParser(
    prog="python -m mgvm.export",
    description="Write an mgvm workdir's, official or Hugging Face VideoMAE model in another "
    "format (hf, official, stablehlo, onnx) and check it by reading it back.",
  )
  p.add_argument("--checkpoint", required=True, help="mgvm workdir, official .pth or HF directory")
  p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
  p.add_argument("--out", required=True, help="output directory (official: a .pth file)")
  add_model_args(p)
  p.add_argument(
    "--batch-size", type=int, default=None, help="stablehlo / onnx: a fixed batch (default: any)"
  )
  p.add_argument("--labels", default="", help="class names, one per line (hf config id2label)")
  p.add_argument(
    "--platforms", default="cpu,cuda,tpu", help="stablehlo: platforms to lower for (comma list)"
  )
  p.add_argument("--no-check", action="store_true", help="skip reading the export back")
  a = p.parse_args(argv)
  from mgvm.cli import fail

  try:
    return export(
      a.checkpoint,
      a.format,
      a.out,
      num_frames=a.num_frames,
      image_size=a.image_size,
      num_heads=a.num_heads,
      batch_size=a.batch_size,
      labels=a.labels,
      platforms=tuple(x for x in a.platforms.split(",") if x),
      check=not a.no_check,
    )
  except (ValueError, FileNotFoundError, ImportError, TypeError) as e:
    if os.environ.get("MGVM_TRACEBACK") == "1":
      raise
    fail(str(e))


if __name__ == "__main__":
  main(sys.argv[1:])
