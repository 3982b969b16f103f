"""`eval.py`'s body: restore a workdir's latest params, evaluate a split, write `DIR/eval/<split>.json`."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from mgvm import masking
from mgvm.train import sharding as sharding_lib
from mgvm.train import state as state_lib


def restore_params(config, workdir: str, abstract_params, checkpoint: str | None = None,
                   num_classes: int | None = None):
  """Params from a torch/HF `checkpoint` if given, else the latest `params` item of `workdir`."""
  if checkpoint and config.task == "detect":
    raise ValueError("--checkpoint imports VideoMAE weights (pre-training or classifier); an "
                     "EVAD detector is evaluated from its own workdir")
  if checkpoint:
    from mgvm.models.load import load_torch_checkpoint
    kind = "pretrain" if config.task == "pretrain" else "classifier"
    extra = {} if kind == "pretrain" else {"num_classes": num_classes}
    model = load_torch_checkpoint(checkpoint, kind=kind, num_frames=config.num_frames,
                                  image_size=config.image_size, **extra)
    return nnx.state(model, nnx.Param), f"torch checkpoint {checkpoint}"
  from mgvm.train import checkpoint as checkpoint_lib
  from mgvm.train.loop import checkpoint_dir
  directory = checkpoint_dir(workdir)
  with checkpoint_lib.Checkpointer(directory, save_every_steps=1) as ckpt:
    step = ckpt.latest_step()
  params = checkpoint_lib.load_params(directory, abstract_params, step=step)
  return params, f"{directory} step {step}"


def eval_target_fps(target_fps):
  """The evaluation rate: `target_fps`, or the first entry of a list (None for 0 / None)."""
  if isinstance(target_fps, (list, tuple)):
    return target_fps[0] if target_fps else None
  return target_fps or None


def evaluate(config, workdir: str, *, split: str | None = None, checkpoint: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """Evaluates `config.task`'s model on `split` (default `config.eval.split`); returns the result."""
  from mgvm.data import pipeline, sources
  from mgvm.train.loop import checkpoint_dir, classifier_compressor, num_classes_for
  split = split or config.eval.split
  mesh = sharding_lib.make_mesh(config.mesh.data)
  local_batch = sharding_lib.check_batch_size(config.eval.batch_size, mesh)
  source = sources.resolve(config.data, log=log)
  num_classes = num_classes_for(config, source) if config.task != "pretrain" else None
  model_fn = lambda: state_lib.build_model(config, num_classes=num_classes)  # noqa: E731
  abstract_model = nnx.eval_shape(model_fn)
  graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
  replicated = sharding_lib.replicated(mesh)
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_params)
  params, origin = restore_params(config, workdir, abstract_params, checkpoint, num_classes)
  params = jax.device_put(params, replicated)

  if config.task == "detect":
    result = _evaluate_detection(config, source, split, graphdef, params, mesh, local_batch,
                                 num_classes, abstract_model)
    return _write(config, workdir, dict(result, split=split, params=origin, data=source.root), log)
  views = (config.eval.num_clips, config.eval.num_crops) if config.task == "finetune" else (1, 1)
  files = source.split(split)
  # every host runs the same number of batches (fully masked ones after its own data)
  same_count = (pipeline.eval_num_batches(files, batch_size=local_batch, num_clips=views[0],
                                          num_crops=views[1], process_count=jax.process_count())
                if jax.process_count() > 1 else None)
  ds = pipeline.make_dataset(
      files, mode="eval", eval_batches=same_count, num_frames=config.num_frames, image_size=config.image_size,
      batch_size=local_batch, target_fps=eval_target_fps(config.data.target_fps),
      frame_stride=config.data.frame_stride, temporal=config.data.temporal,
      num_clips=views[0], num_crops=views[1], parse_fn=source.parse_fn,
      process_index=jax.process_index(), process_count=jax.process_count())
  batches = ds.as_numpy_iterator()
  if config.eval.max_batches:
    batches = itertools.islice(batches, config.eval.max_batches)

  if config.task == "finetune":
    from mgvm.evaluate import classification
    compressor = classifier_compressor(config, abstract_model.grid)
    result = classification.evaluate(graphdef, params, batches, mesh, num_classes,
                                     compressor=compressor)
    result["views"] = f"{views[0]} clips x {views[1]} crops"
    if compressor is not None:
      result["compression"] = {"kind": compressor.kind, **compressor.params,
                               "tokens": f"{compressor.num_keep} of {compressor.num_tokens}"}
  else:
    from mgvm.evaluate import reconstruction
    masker = masking.build(config.masking, abstract_model.grid)
    result = reconstruction.evaluate(graphdef, params, masker, batches, mesh, seed=config.seed + 1)
    result["masking"] = config.masking.to_dict()
  result.update(split=split, params=origin, data=source.root)
  return _write(config, workdir, result, log)


def _evaluate_detection(config, source, split, graphdef, params, mesh, local_batch, num_classes,
                        abstract_model) -> dict[str, Any]:
  """frame-mAP on `split`'s keyframes and GFLOPs per clip of an EVAD checkpoint."""
  from mgvm.data import detection
  from mgvm.evaluate import detection_eval
  if jax.process_count() > 1:
    raise NotImplementedError("detection evaluation runs on one host")
  ds = detection.make_detection_dataset(
      source.split(split), mode="eval", num_frames=config.num_frames,
      image_size=config.image_size, batch_size=local_batch, num_classes=num_classes,
      max_boxes=config.evad.max_boxes, target_fps=eval_target_fps(config.data.target_fps),
      frame_stride=config.data.frame_stride,
      keyframes_per_video=config.eval.get("keyframes_per_video", 1))
  batches = ds.as_numpy_iterator()
  if config.eval.max_batches:
    batches = itertools.islice(batches, config.eval.max_batches)
  result = detection_eval.evaluate(graphdef, params, batches, mesh, num_classes=num_classes,
                                   image_hw=abstract_model.image_hw,
                                   person_threshold=config.evad.person_threshold)
  e = config.evad
  result.update(tokens=f"{abstract_model.num_kept_tokens} of {int(np.prod(abstract_model.grid))} "
                       f"leave the encoder", keep_rate=e.keep_rate,
                enhanced_weight=e.enhanced_weight, official_order=e.official_order)
  return result


def _write(config, workdir: str, result: dict[str, Any], log) -> dict[str, Any]:
  split = result["split"]
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{split}.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  result["path"] = path
  log(summary(config, workdir, result))
  return result


def summary(config, workdir: str, result: dict[str, Any]) -> str:
  """A few lines a newcomer can read: the score against chance and where everything is."""
  lines = []
  if config.task == "detect":
    lines.append(f"frame-mAP@{result['iou_threshold']:g} {result['frame_map']:.3f} on "
                 f"{result['num_keyframes']} {result['split']} keyframes ({result['num_gt']} "
                 f"ground-truth actions); {result['gflops_per_clip']:.3g} GFLOPs per clip "
                 f"(encoder {result['encoder_gflops_per_clip']:.3g}; {result['tokens']})")
  elif config.task == "finetune":
    ratio = result["top1"] / result["chance"]
    lines.append(f"top-1 {result['top1']:.3f} (top-5 {result.get('top5', float('nan')):.3f}) on "
                 f"{result['num_videos']} {result['split']} videos, {result['views']}: "
                 f"{ratio:.1f}x chance ({result['chance']:.3f})")
  else:
    lines.append(f"masked reconstruction on {result['num_clips']} {result['split']} clips: "
                 f"loss {result['loss']:.4f}, PSNR {result['psnr']:.2f} dB")
  from mgvm.train.loop import checkpoint_dir
  lines.append(f"result: {result['path']}; checkpoints: {checkpoint_dir(workdir)}")
  plot = os.path.join(workdir, "loss.png")
  if os.path.exists(plot):
    lines.append(f"loss curve: {plot}; metrics: {os.path.join(workdir, 'metrics.jsonl')}")
  return "\n".join(lines)
