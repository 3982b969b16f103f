"""Keyframe-centred clips with the keyframe's actor boxes and multi-label actions (EVAD).

A clip of `num_frames` frames is centred on a keyframe k: frame j of the clip is source frame
`k + round((j − T/2) · stride)` clamped to the video (so the keyframe is clip frame T/2, the
first frame of token slice T'/2, as AVA's 16×4 clips around the keyframe), with `stride =
fps / target_fps` or `frame_stride`. Boxes come from the record's `region/bbox` at frame k
(normalised xyxy) and `region/label/index`; boxes repeated with different labels (AVA's
one-row-per-label layout) merge into one multi-hot row. No crop (boxes must stay whole); the
whole frame is resized (`resize`) to `image_size` (an int S for S × S, or (H, W)):
- "square": stretched to the canvas (the aspect is not kept);
- "short_side": the aspect kept, scaled by min(H / h, W / w) (for a landscape video in a
  landscape canvas: short side H, long side at most W, detectron2's ResizeShortestEdge with a
  max size), then zero-padded at the bottom and right to (H, W) (`video_ops.resize_keep_aspect`).
Boxes are pixels of the resized content; training may flip clip and boxes, mirrored about the
content's width (the padding stays on the right).

Element keys: `video` [T, H, W, 3] uint8 (flipped and normalised on the accelerator by
`mgvm.data.device_ops.model_video`, as classification clips), `flip` (bool: the boxes are
already flipped), `boxes` [G, 4] xyxy pixels, `box_valid` [G], `actions` [G, C] float32
multi-hot, `keyframe` (source frame index), `video_index`, `mask` (False on eval padding),
`frame_indices` [T]; "short_side" adds `image_hw` (int32 [2], the content's size: the model's
image size for that clip, and what detections and ground truth are divided by at evaluation);
eval adds `video_id` (the record's id) and `fps` (its stored rate), which map a keyframe to its
time (AVA's excluded timestamps). At most `max_boxes` boxes per keyframe are kept (the first
ones); `num_truncated` counts the rest.

Detection and classification clips share the shells of `mgvm.data.pipeline` (`train_stream`,
`eval_stream`) and differ only in the per-record function.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.data import sampling, video_ops
from mgvm.data.pipeline import (
  busiest_host_batches,
  eval_stream,
  host_files,
  parse_record,
  train_stream,
  training_files,
)


def keyframe_clip_indices(num_frames_src, keyframe, stride, num_frames: int) -> tf.Tensor:
  """int32 [num_frames]: `clamp(k + floor((j − T//2) · stride + 0.5), 0, n − 1)`."""
  offsets = tf.floor(
    (tf.range(num_frames, dtype=tf.float64) - float(num_frames // 2)) * tf.cast(stride, tf.float64)
    + 0.5
  )
  idx = tf.cast(keyframe, tf.float64) + offsets
  return tf.cast(tf.clip_by_value(idx, 0.0, tf.cast(num_frames_src - 1, tf.float64)), tf.int32)


def annotated_frames(boxes: tf.RaggedTensor) -> tf.Tensor:
  """int32 [M]: frames with at least one box (every frame when none has one)."""
  has = boxes.row_lengths() > 0
  every = tf.range(tf.cast(boxes.nrows(), tf.int32))
  return tf.cond(tf.reduce_any(has), lambda: tf.cast(tf.where(has)[:, 0], tf.int32), lambda: every)


def eval_keyframes(candidates, count: int) -> tf.Tensor:
  """int32: `count` evenly spaced candidates `c[floor((i + 0.5) · M / count)]`; all for 0."""
  candidates = tf.convert_to_tensor(candidates, tf.int32)
  if count == 0:
    return candidates
  m = tf.cast(tf.size(candidates), tf.float64)
  pick = tf.cast(tf.floor((tf.range(count, dtype=tf.float64) + 0.5) * m / count), tf.int32)
  return tf.gather(candidates, pick)


RESIZES = ("square", "short_side")


def _scale_xyxy(image_size) -> tf.Tensor:
  """float32 [4] (w, h, w, h) of an int S (S × S), an (h, w) pair or an int / float [2] tensor."""
  if isinstance(image_size, (int, float)):
    return tf.fill([4], tf.cast(image_size, tf.float32))
  hw = tf.cast(tf.convert_to_tensor(image_size), tf.float32)
  return tf.stack([hw[1], hw[0], hw[1], hw[0]])


def keyframe_targets(
  boxes_flat, labels, *, image_size, max_boxes: int, num_classes: int, label_offset: int = 0
):
  """(boxes [G, 4] px, valid [G], actions [G, C], num_truncated) from one frame's annotations.

  Normalised boxes (clipped to [0, 1]) become pixels of `image_size`: an int S (S × S), or the
  (h, w) the frame's content was resized to. A stored label l is class `l − label_offset` (AVA's
  1-based action ids with offset 1, as SlowFast's `label − 1`); classes outside
  `[0, num_classes)` are left out.
  """
  boxes = tf.reshape(tf.cast(boxes_flat, tf.float32), [-1, 4])
  labels = tf.cast(labels, tf.int32) - int(label_offset)
  check = tf.debugging.assert_equal(
    tf.shape(boxes)[0],
    tf.shape(labels)[0],
    message=("region/bbox and region/label/index disagree on the number of boxes"),
  )
  with tf.control_dependencies([check]):
    boxes = tf.clip_by_value(boxes, 0.0, 1.0) * _scale_xyxy(image_size)
  same = tf.reduce_all(tf.equal(boxes[:, None], boxes[None]), axis=-1)  # [n, n]
  n = tf.shape(boxes)[0]
  earlier = tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0) & ~tf.eye(n, dtype=tf.bool)
  first = ~tf.reduce_any(same & earlier, axis=1)
  in_range = (labels >= 0) & (labels < num_classes)
  one_hot = (
    tf.one_hot(tf.where(in_range, labels, 0), num_classes) * tf.cast(in_range, tf.float32)[:, None]
  )
  actions = tf.minimum(tf.matmul(tf.cast(same, tf.float32), one_hot), 1.0)
  boxes, actions = tf.boolean_mask(boxes, first), tf.boolean_mask(actions, first)
  count = tf.shape(boxes)[0]
  kept = tf.minimum(count, max_boxes)
  pad = max_boxes - kept
  boxes = tf.pad(boxes[:kept], [[0, pad], [0, 0]])
  actions = tf.pad(actions[:kept], [[0, pad], [0, 0]])
  valid = tf.range(max_boxes) < kept
  return (
    tf.ensure_shape(boxes, [max_boxes, 4]),
    valid,
    tf.ensure_shape(actions, [max_boxes, num_classes]),
    count - kept,
  )


def _clip_and_targets(
  ex, n, keyframe, stride, *, num_frames, image_size, resize, max_boxes, num_classes, label_offset
):
  """(indices, uint8 frames, content (h, w) int32 [2], boxes, valid, actions, truncated)."""
  indices = keyframe_clip_indices(n, keyframe, stride, num_frames)
  decoded = video_ops.decode_frames(ex["frames"], indices)
  if resize == "short_side":
    frames, content = video_ops.resize_keep_aspect(decoded, image_size)
    scale = content
  else:
    frames, scale = video_ops.resize(decoded, image_size), image_size
    content = tf.constant(video_ops.size_hw(image_size), tf.int32)
  boxes, valid, actions, truncated = keyframe_targets(
    ex[fmt.REGION_BBOX][keyframe],
    ex[fmt.REGION_LABEL][keyframe],
    image_size=scale,
    max_boxes=max_boxes,
    num_classes=num_classes,
    label_offset=label_offset,
  )
  return indices, video_ops.to_uint8(frames), content, boxes, valid, actions, truncated


def flip_boxes(boxes, width) -> tf.Tensor:
  """xyxy pixel boxes [G, 4] mirrored about a content of `width` pixels: x -> width − x (the
  exact mirror of the flipped pixels; the reference's `width − x − 1` is one pixel off)."""
  width = tf.cast(width, tf.float32)
  return tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1)


def make_detection_dataset(
  files: str | Sequence[str],
  *,
  mode: str,
  num_frames: int,
  image_size: int | Sequence[int],
  batch_size: int,
  num_classes: int,
  max_boxes: int,
  resize: str = "square",
  target_fps: float | None = None,
  frame_stride: int = 4,
  keyframes_per_video: int = 1,
  flip: bool = False,
  seed: int = 0,
  shuffle_buffer: int = 256,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  eval_batches: int | None = None,
  threads: int = 0,
  host_independent_batches: bool = False,
  label_offset: int = 0,
) -> tf.data.Dataset:
  """Batched detection clips for this host (see the module docstring).

  Keyframes are frames with boxes (AVA-like data annotates one frame per second; the synthetic
  set every frame), or any frame of a video without boxes. "train": repeats forever, one random
  keyframe per video visit, optional flip, drops the remainder, starts at batch `start_step`.
  "eval": one pass, `keyframes_per_video` evenly spaced keyframes per video (0: all of them),
  zero-padded last batch with `mask` False; `eval_batches` pads further with fully-masked
  batches to exactly that many (`eval_num_batches`: what a multi-host evaluation passes). Both
  run in the shells of `mgvm.data.pipeline` (`train_stream`, `eval_stream`) that classification
  clips use; `host_independent_batches` as in `pipeline.make_dataset`. `image_size` (an int or
  (H, W)) and `resize` ("square" | "short_side"): the module docstring. `label_offset`: stored
  label l is class l − label_offset (`keyframe_targets`).
  """
  if mode not in ("train", "eval"):
    raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
  if resize not in RESIZES:
    raise ValueError(
      f"config.data.resize={resize!r} is not known; accepted values: "
      f"{', '.join(repr(r) for r in RESIZES)}"
    )
  sizes = (image_size,) if isinstance(image_size, (int, float)) else tuple(image_size)
  if len(sizes) not in (1, 2):
    raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
  image_size = sizes[0] if len(sizes) == 1 else tuple(sizes)
  for name, value in (
    *((f"image_size[{i}]", v) for i, v in enumerate(sizes)),
    ("num_frames", num_frames),
    ("batch_size", batch_size),
    ("num_classes", num_classes),
    ("max_boxes", max_boxes),
  ):
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value}")
  if int(keyframes_per_video) != keyframes_per_video or keyframes_per_video < 0:
    raise ValueError(
      f"keyframes_per_video must be an integer >= 0 (0: every annotated frame), "
      f"got {keyframes_per_video}"
    )
  if mode == "train" and eval_batches is not None:
    raise ValueError(f"eval_batches is for mode='eval', got mode={mode!r}")
  parse = _parse_annotated
  common = dict(
    num_frames=num_frames,
    image_size=image_size,
    resize=resize,
    max_boxes=max_boxes,
    num_classes=num_classes,
    label_offset=int(label_offset),
  )
  padded = resize == "short_side"  # the clips carry their content's size
  fps_target = target_fps or None

  if mode == "train":
    files, streams = training_files(
      files, process_index, process_count, host_independent=host_independent_batches
    )
    base = tf.constant([seed, streams], tf.int64)

    def process(position, serialized):
      ex, n = parse(serialized)
      s_key, s_flip = tf.unstack(
        tf.random.experimental.stateless_split(
          tf.random.experimental.stateless_fold_in(base, position), 2
        )
      )
      candidates = annotated_frames(ex[fmt.REGION_BBOX])
      keyframe = tf.gather(
        candidates, tf.random.stateless_uniform([], s_key, 0, tf.size(candidates), dtype=tf.int32)
      )
      stride = sampling.stride_for(ex["fps"], fps_target, frame_stride)
      indices, frames, content, boxes, valid, actions, truncated = _clip_and_targets(
        ex, n, keyframe, stride, **common
      )
      do = video_ops.flip_decision(s_flip) if flip else tf.constant(False)
      flipped = flip_boxes(boxes, content[1])
      boxes = tf.where(do & valid[:, None], flipped, boxes)  # the frames flip on the device
      out = {
        "video": frames,
        "flip": do,
        "boxes": boxes,
        "box_valid": valid,
        "actions": actions,
        "keyframe": keyframe,
        "frame_indices": indices,
        "num_truncated": truncated,
      }
      if padded:
        out["image_hw"] = content
      return out

    return train_stream(
      files,
      lambda position, serialized: tf.nest.map_structure(
        lambda x: x[None], process(position, serialized)
      ),
      batch_size=batch_size,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
      host_independent=host_independent_batches,
      shuffle_buffer=shuffle_buffer,
      start_step=start_step,
      threads=threads,
    )

  def process_eval(video_index, serialized):
    ex, n = parse(serialized)
    stride = sampling.stride_for(ex["fps"], fps_target, frame_stride)

    def one(keyframe):
      indices, frames, content, boxes, valid, actions, truncated = _clip_and_targets(
        ex, n, keyframe, stride, **common
      )
      out = {
        "video": frames,
        "boxes": boxes,
        "box_valid": valid,
        "actions": actions,
        "keyframe": keyframe,
        "frame_indices": indices,
        "num_truncated": truncated,
        "video_index": tf.cast(video_index, tf.int32),
        "video_id": ex["id"],
        "fps": ex["fps"],
        "mask": tf.constant(True),
      }
      if padded:
        out["image_hw"] = content
      return out

    keyframes = eval_keyframes(annotated_frames(ex[fmt.REGION_BBOX]), keyframes_per_video)
    return tf.data.Dataset.from_tensor_slices(keyframes).map(one)

  return eval_stream(
    host_files(files, process_index, process_count),
    process_eval,
    batch_size=batch_size,
    eval_batches=eval_batches,
    threads=threads,
    flat=True,
  )


def _parse_annotated(serialized):
  return parse_record(serialized, lambda x: fmt.parse_example(x, with_annotations=True))


def eval_keyframe_count(serialized, keyframes_per_video: int):
  """int32: the keyframes the eval mode takes from one record (decodes no frames)."""
  if keyframes_per_video:
    return tf.constant(keyframes_per_video, tf.int32)
  ex, _ = _parse_annotated(serialized)
  return tf.size(annotated_frames(ex[fmt.REGION_BBOX]))


def eval_num_batches(
  files: str | Sequence[str], *, batch_size: int, keyframes_per_video: int, process_count: int
) -> int:
  """`pipeline.busiest_host_batches` of detection clips: pass it to every host as
  `eval_batches` (every host then runs the same number of batches)."""
  return busiest_host_batches(
    files,
    batch_size=batch_size,
    process_count=process_count,
    items_of=lambda s: eval_keyframe_count(s, keyframes_per_video),
  )
