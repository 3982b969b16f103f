"""EVAD evaluation: detections per keyframe, frame-mAP (AVA protocol), GFLOPs per clip.

Inference as the reference (docs/algorithms.md §4.4): person probability = softmax of the last
localizer stage; proposals with probability >= `person_threshold` are kept (all of them when
none reaches it); each kept box gives one detection per class scored by the sigmoid of the
last decoder layer's action logit. Frame keys are `(host, video_index, keyframe)`.

Pixel frame: detections and ground truth are both divided by the clip's content size (`image_hw`
of padded "short_side" clips, else the model's input size), i.e. scored as boxes normalised to
the original frame, as the reference's `detector_postprocess(norm_scale=True)` and AVA's CSVs.

AVA protocol options of `evaluate`: `class_ids` (the classes scored, e.g. the 60 of AVA's
label map, in the ids the data stores), `frame_order` ("input": the SlowFast / EVAD port's
unsorted per-frame matching; "score": the TF API's) and `excluded` (AVA's excluded
timestamps: `(video_id, second)` pairs; a keyframe at `round(keyframe / fps + timestamp_offset)`
seconds of an excluded pair is left out on both sides).

On several hosts each host predicts its own keyframes (every host runs the same number of
batches: `mgvm.data.detection.eval_num_batches`), then the detections and ground truth of all
hosts are gathered and every host computes the same frame-mAP. Boxes and scores travel as
float32 on one host too, so the result does not depend on the number of hosts.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, Sequence

import jax
import numpy as np
from flax import nnx

from mgvm.data.device_ops import model_video
from mgvm.models.localizer import person_scores


def _predict(graphdef: nnx.GraphDef, normalization: str = "imagenet"):
  def predict(params, video, image_hw=None):
    batch = {"video": video} if image_hw is None else {"video": video, "image_hw": image_hw}
    video = model_video(batch, normalization=normalization)  # uint8 clips are normalised here
    out, _ = nnx.merge(graphdef, params)(video, image_hw, deterministic=True)
    person = person_scores(out["person_logits"][-1])
    return person, out["boxes"][-1], jax.nn.sigmoid(out["actions"][-1])

  return predict


def predict_fn(graphdef: nnx.GraphDef, normalization: str = "imagenet"):
  """jit `(params, video, image_hw=None) -> (person prob [B, P], boxes [B, P, 4] px, action probs
  [B, P, C])`; `image_hw` [B, 2]: each clip's content size (padded clips)."""
  return jax.jit(_predict(graphdef, normalization))


def select_people(person: np.ndarray, threshold: float) -> np.ndarray:
  """bool [P]: person prob >= threshold, or every proposal when none is."""
  keep = person >= threshold
  return keep if keep.any() else np.ones_like(keep)


def content_hw(batch: dict[str, np.ndarray], image_hw) -> np.ndarray:
  """int [B, 2]: each clip's content size, `batch["image_hw"]` where the batch has it (padding
  rows, all zero, get `image_hw`), else the model's `image_hw` for every clip."""
  n = len(batch["video"])
  full = np.broadcast_to(np.asarray(image_hw, np.int64), (n, 2))
  if "image_hw" not in batch:
    return np.array(full)
  hw = np.asarray(batch["image_hw"], np.int64).reshape(n, 2)
  return np.where((hw > 0).all(-1, keepdims=True), hw, full)


def keyframe_seconds(keyframe: int, fps: float, offset: float = 0.0) -> int:
  """The whole second of a stored keyframe: `floor(keyframe / fps + offset + 0.5)`, the inverse of
  `mgvm.datasets.prepare`'s `round((t − offset) · fps)` for an annotated second t (fps >= 1)."""
  return int(np.floor(keyframe / float(fps) + offset + 0.5))


def excluded_keys(
  batch: dict[str, np.ndarray], excluded, timestamp_offset: float = 0.0, host: int = 0
) -> list[tuple[int, int, int]]:
  """Frame keys `(host, video_index, keyframe)` of the batch's real keyframes whose
  `(video_id, keyframe_seconds)` is in `excluded` (AVA's excluded timestamps)."""
  if not excluded:
    return []
  mask = np.asarray(batch.get("mask", np.ones(len(batch["keyframe"]), bool)), bool)
  out = []
  for i in np.flatnonzero(mask):
    video = batch["video_id"][i]
    video = video.decode() if isinstance(video, bytes) else str(video)
    k = int(batch["keyframe"][i])
    if (video, keyframe_seconds(k, batch["fps"][i], timestamp_offset)) in excluded:
      out.append((host, int(batch["video_index"][i]), k))
  return out


def batch_detections(
  batch: dict[str, np.ndarray], person, boxes, actions, image_hw, threshold: float, host: int = 0
) -> tuple[list, list]:
  """(detections, ground truth) of one batch in `frame_map`'s tuple form, boxes divided by each
  clip's content size (`content_hw`); frame keys `(host, video_index, keyframe)`."""
  sizes = content_hw(batch, image_hw).astype(np.float64)
  dets, gts = [], []
  mask = np.asarray(batch.get("mask", np.ones(len(person), bool)), bool)
  for i in np.flatnonzero(mask):
    h, w = sizes[i]
    scale = np.asarray([w, h, w, h], np.float64)
    key = (host, int(batch["video_index"][i]), int(batch["keyframe"][i]))
    for box, labels in zip(
      batch["boxes"][i][batch["box_valid"][i]], batch["actions"][i][batch["box_valid"][i]]
    ):
      for c in np.flatnonzero(labels > 0.5):
        gts.append((key, tuple(np.asarray(box, np.float64) / scale), int(c)))
    for p in np.flatnonzero(select_people(np.asarray(person[i]), threshold)):
      box = tuple(np.clip(np.asarray(boxes[i][p], np.float64) / scale, 0.0, 1.0))
      for c, score in enumerate(np.asarray(actions[i][p])):
        dets.append((key, box, c, float(score)))
  return dets, gts


def flops_of(compiled) -> float:
  """FLOPs of a compiled XLA executable by its cost analysis (per device when sharded)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def clips_per_device(video) -> int:
  """Clips one device computes: the batch of its shard (the whole batch when unsharded)."""
  sharding = getattr(video, "sharding", None)
  return int(sharding.shard_shape(video.shape)[0]) if sharding is not None else video.shape[0]


def encoder_gflops(graphdef: nnx.GraphDef, params, video) -> float:
  """GFLOPs per clip of the (pruned) encoder on `video` [B, T, H, W, 3]."""
  encode = jax.jit(lambda p, v: nnx.merge(graphdef, p).encode(v)[0])
  return flops_of(encode.lower(params, video).compile()) / clips_per_device(video) / 1e9


def _rows(items: list, with_score: bool) -> dict[str, np.ndarray]:
  """`frame_map` tuples → arrays (keys int32 [N, 3], boxes float32 [N, 4], class, score)."""
  n = len(items)
  return {
    "key": np.asarray([item[0] for item in items], np.int32).reshape(n, 3),
    "box": np.asarray([item[1] for item in items], np.float32).reshape(n, 4),
    "cls": np.asarray([item[2] for item in items], np.int32).reshape(n),
    **(
      {"score": np.asarray([item[3] for item in items], np.float32).reshape(n)}
      if with_score
      else {}
    ),
  }


def _tuples(rows: dict[str, np.ndarray]) -> list:
  """Arrays of `_rows` → `frame_map` tuples (boxes and scores as float64 of the float32 values)."""
  out = []
  for i in range(len(rows["cls"])):
    item = (
      tuple(int(v) for v in rows["key"][i]),
      tuple(float(v) for v in rows["box"][i]),
      int(rows["cls"][i]),
    )
    out.append(item + (float(rows["score"][i]),) if "score" in rows else item)
  return out


def scored_classes(num_classes: int, class_ids: Sequence[int] | None = None) -> list[int]:
  """The class ids frame-mAP scores: `class_ids` (each in [0, num_classes)), or all of them."""
  scored = list(range(num_classes)) if class_ids is None else [int(c) for c in class_ids]
  outside = sorted({c for c in scored if not 0 <= c < num_classes})
  if outside:
    raise ValueError(f"class ids {outside} are outside the model's {num_classes} classes")
  return scored


def score(
  dets: list,
  gts: list,
  *,
  num_classes: int,
  class_ids: Sequence[int] | None = None,
  excluded: Iterable = (),
  frame_order: str = "score",
  iou_threshold: float = 0.5,
) -> dict[str, Any]:
  """frame-mAP of `batch_detections`' tuples over `class_ids` (`scored_classes`), leaving out the
  frame keys `excluded` (`excluded_keys`) on both sides; `frame_order` as `frame_map`'s."""
  from mgvm.evaluate.frame_map import frame_map

  scored = scored_classes(num_classes, class_ids)
  skip = [tuple(k) for k in excluded]
  result = frame_map(
    dets, gts, iou_threshold=iou_threshold, class_ids=scored, excluded=skip, frame_order=frame_order
  )
  per_class = {int(k): (None if np.isnan(v) else float(v)) for k, v in result["per_class"].items()}
  return {
    "frame_map": float(result["mAP"]),
    "per_class_ap": per_class,
    "iou_threshold": iou_threshold,
    "classes_scored": len(scored),
    "frame_order": frame_order,
    "excluded_keyframes": len(set(skip)),
    "num_gt": int(sum(result["num_gt"].values())),  # scored: listed classes, frames not excluded
  }


def evaluate(
  graphdef: nnx.GraphDef,
  params,
  batches: Iterable[dict],
  mesh,
  *,
  num_classes: int,
  image_hw,
  person_threshold: float = 0.7,
  iou_threshold: float = 0.5,
  class_ids: Sequence[int] | None = None,
  frame_order: str = "score",
  excluded: Collection[tuple[str, int]] | None = None,
  timestamp_offset: float = 0.0,
  normalization: str = "imagenet",
) -> dict[str, Any]:
  """frame-mAP of `params` over every keyframe in `batches` (`mgvm.data.detection` eval mode),
  of every host's keyframes when there are several (the module docstring). `class_ids`: the
  classes scored (None: all `num_classes`); `frame_order`, `excluded`, `timestamp_offset`: the
  module docstring; `normalization`: the clips' (`config.data.normalization`)."""
  from mgvm.sharding import gather_hosts, host_rows, to_global

  scored = scored_classes(num_classes, class_ids)  # bad options fail before any compile
  if frame_order not in ("score", "input"):
    raise ValueError(f"frame_order must be 'score' or 'input', got {frame_order!r}")
  excluded = set(excluded or ())
  host = jax.process_index()
  predict, total_gflops, enc_gflops = None, None, None
  dets, gts, skip = [], [], []
  counts = np.zeros(2, np.int32)  # keyframes, truncated boxes
  for batch in batches:
    inputs = {"video": batch["video"]}
    if "image_hw" in batch:
      inputs["image_hw"] = content_hw(batch, image_hw).astype(np.int32)
    inputs = to_global(inputs, mesh)
    video, hw = inputs["video"], inputs.get("image_hw")
    if predict is None:  # compiled once: predictions and the FLOPs of the whole detector
      predict = jax.jit(_predict(graphdef, normalization)).lower(params, video, hw).compile()
      total_gflops = flops_of(predict) / clips_per_device(video) / 1e9
      enc_gflops = encoder_gflops(graphdef, params, video)
    person, boxes, actions = host_rows(predict(params, video, hw), mesh)
    d, g = batch_detections(batch, person, boxes, actions, image_hw, person_threshold, host)
    dets += d
    gts += g
    skip += excluded_keys(batch, excluded, timestamp_offset, host)
    real = np.asarray(batch["mask"], bool)
    counts += [int(real.sum()), int(np.asarray(batch["num_truncated"])[real].sum())]
  dets = _tuples(gather_hosts(_rows(dets, with_score=True)))
  gts = _tuples(gather_hosts(_rows(gts, with_score=False)))
  skip = [
    tuple(int(v) for v in k)
    for k in gather_hosts({"k": np.asarray(skip, np.int32).reshape(-1, 3)})["k"]
  ]
  keyframes, truncated = (int(v) for v in gather_hosts({"n": counts[None]})["n"].sum(0))
  if not keyframes:
    raise ValueError("no evaluation keyframes were seen (is the split empty?)")
  return {
    **score(
      dets,
      gts,
      num_classes=num_classes,
      class_ids=scored,
      excluded=skip,
      frame_order=frame_order,
      iou_threshold=iou_threshold,
    ),
    "num_keyframes": keyframes,
    "num_detections": len(dets),
    "truncated_gt_boxes": truncated,
    "gflops_per_clip": total_gflops,
    "encoder_gflops_per_clip": enc_gflops,
    "hosts": jax.process_count(),
  }
