"""The on-disk format: one `tf.train.SequenceExample` per video (docs/algorithms.md §0.4).

Context features
  video/id            bytes    unique id (file stem, or synthetic index)
  video/fps           float    frame rate of the *stored* frames
  video/num_frames    int64    number of stored frames
  video/height        int64    frame height in pixels
  video/width         int64    frame width in pixels
  clip/label/index    int64    class id, -1 when unlabelled
  clip/label/text     bytes    class name ("" when unlabelled)
Feature lists (one entry per stored frame)
  image/encoded       bytes    the frame as JPEG
  region/bbox         float    actor boxes, 4 per actor, x1 y1 x2 y2 normalised to [0, 1]
  region/label/index  int64    one action id per actor box
  object/bbox         float    every moving object (actors and distractors), 4 per object
  object/displacement float    per object (dx, dy) in pixels from this frame to the next
  motion/vector       float    codec motion vectors on a block grid: gh·gw·(dx, dy), the pixels
                               the block's content moved from the previous stored frame to this
                               one (content at p here was at p − (dx, dy) there); row-major
  motion/valid        int64    gh·gw flags: 1 where a codec vector covered the block, 0 filled
  motion/frame_type   int64    the frame's picture type: 0 I, 1 P, 2 B, 3 other
Context features of the motion field (absent: the video has none)
  motion/grid         int64    (gh, gw): blocks per column and row
  motion/block        int64    the block side in stored pixels (16)
The feature lists after `image/encoded` are optional (real videos have none; the motion field
only where `mgvm.datasets.prepare --motion-vectors` wrote it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

ID, FPS, NUM_FRAMES = "video/id", "video/fps", "video/num_frames"
HEIGHT, WIDTH = "video/height", "video/width"
LABEL, LABEL_TEXT = "clip/label/index", "clip/label/text"
FRAMES = "image/encoded"
REGION_BBOX, REGION_LABEL = "region/bbox", "region/label/index"
OBJECT_BBOX, OBJECT_DISPLACEMENT = "object/bbox", "object/displacement"
MOTION_VECTOR, MOTION_VALID, MOTION_FRAME_TYPE = (
  "motion/vector",
  "motion/valid",
  "motion/frame_type",
)
MOTION_GRID, MOTION_BLOCK = "motion/grid", "motion/block"
FRAME_TYPES = {"I": 0, "P": 1, "B": 2}  # other picture types: 3

_ANNOTATIONS = {
  REGION_BBOX: np.float32,
  REGION_LABEL: np.int64,
  OBJECT_BBOX: np.float32,
  OBJECT_DISPLACEMENT: np.float32,
}


def _bytes(values) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))


def _ints(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values).tolist()))


def encode_example(
  *,
  video_id: str,
  fps: float,
  jpeg_frames: Sequence[bytes],
  height: int,
  width: int,
  label: int = -1,
  label_text: str = "",
  annotations: dict[str, Sequence[np.ndarray]] | None = None,
  motion: dict[str, np.ndarray] | None = None,
) -> bytes:
  """Serialises one video. `annotations` maps a feature-list key above to one array per frame.

  `motion`: the codec motion field, `vectors` float [n, gh, gw, 2], `valid` bool [n, gh, gw],
  `frame_types` int [n] (`FRAME_TYPES`), `block` int (pixels per block side).
  """
  if not jpeg_frames:
    raise ValueError(f"video {video_id!r} has no frames")
  if not fps > 0:
    raise ValueError(f"video {video_id!r}: fps must be > 0, got {fps}")
  context = tf.train.Features(
    feature={
      ID: _bytes([video_id.encode()]),
      FPS: _floats([fps]),
      NUM_FRAMES: _ints([len(jpeg_frames)]),
      HEIGHT: _ints([height]),
      WIDTH: _ints([width]),
      LABEL: _ints([label]),
      LABEL_TEXT: _bytes([label_text.encode()]),
    }
  )
  lists = {FRAMES: tf.train.FeatureList(feature=[_bytes([f]) for f in jpeg_frames])}
  if motion is not None:
    _add_motion(video_id, len(jpeg_frames), motion, context, lists)
  for key, per_frame in (annotations or {}).items():
    if key not in _ANNOTATIONS:
      raise KeyError(f"unknown annotation {key!r}; known: {sorted(_ANNOTATIONS)}")
    if len(per_frame) != len(jpeg_frames):
      raise ValueError(
        f"video {video_id!r}: {key} has {len(per_frame)} entries for {len(jpeg_frames)} frames"
      )
    make = _floats if _ANNOTATIONS[key] == np.float32 else _ints
    lists[key] = tf.train.FeatureList(feature=[make(v) for v in per_frame])
  example = tf.train.SequenceExample(
    context=context, feature_lists=tf.train.FeatureLists(feature_list=lists)
  )
  return example.SerializeToString(deterministic=True)  # map order independent of the process


def _add_motion(video_id: str, n: int, motion: dict, context, lists) -> None:
  vectors = np.asarray(motion["vectors"], np.float32)
  valid = np.asarray(motion["valid"]).astype(np.int64)
  types = np.asarray(motion["frame_types"], np.int64)
  if vectors.ndim != 4 or vectors.shape[0] != n or vectors.shape[-1] != 2:
    raise ValueError(
      f"video {video_id!r}: motion vectors must be [{n}, gh, gw, 2], got {vectors.shape}"
    )
  if valid.shape != vectors.shape[:3] or types.shape != (n,):
    raise ValueError(
      f"video {video_id!r}: motion valid {valid.shape} / frame_types {types.shape} do not fit "
      f"vectors {vectors.shape}"
    )
  context.feature[MOTION_GRID].CopyFrom(_ints(vectors.shape[1:3]))
  context.feature[MOTION_BLOCK].CopyFrom(_ints([int(motion["block"])]))
  lists[MOTION_VECTOR] = tf.train.FeatureList(feature=[_floats(v) for v in vectors])
  lists[MOTION_VALID] = tf.train.FeatureList(feature=[_ints(v) for v in valid])
  lists[MOTION_FRAME_TYPE] = tf.train.FeatureList(feature=[_ints([t]) for t in types])


def parse_example(
  serialized: tf.Tensor, *, with_annotations: bool = False, with_motion: bool = False
) -> dict[str, tf.Tensor]:
  """Parses one serialised video (graph-mode safe). Frames stay JPEG-encoded.

  Returns `id` (string), `fps` (float32), `num_frames` (int32), `height`, `width` (int32),
  `label` (int32), `frames` [num_frames] (string); with `with_annotations`, the feature lists
  above as ragged [num_frames, None] tensors under their keys; with `with_motion`, `motion`
  float32 [num_frames, gh, gw, 2], `motion_valid` bool [num_frames, gh, gw],
  `motion_frame_type` int32 [num_frames] and `motion_block` int32 (a video without a motion
  field fails, naming its id and the prepare flag).
  """
  context_spec = {
    ID: tf.io.FixedLenFeature([], tf.string),
    FPS: tf.io.FixedLenFeature([], tf.float32),
    NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
  }
  sequence_spec = {FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)}
  if with_motion:
    context_spec[MOTION_GRID] = tf.io.FixedLenFeature([2], tf.int64, default_value=[0, 0])
    context_spec[MOTION_BLOCK] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    sequence_spec[MOTION_VECTOR] = tf.io.RaggedFeature(tf.float32, row_splits_dtype=tf.int32)
    sequence_spec[MOTION_VALID] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int32)
    sequence_spec[MOTION_FRAME_TYPE] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int32)
  if with_annotations:
    for key, dtype in _ANNOTATIONS.items():
      sequence_spec[key] = tf.io.RaggedFeature(tf.as_dtype(dtype), row_splits_dtype=tf.int32)
  context, sequence = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
  out = {
    "id": context[ID],
    "fps": context[FPS],
    "num_frames": tf.cast(context[NUM_FRAMES], tf.int32),
    "height": tf.cast(context[HEIGHT], tf.int32),
    "width": tf.cast(context[WIDTH], tf.int32),
    "label": tf.cast(context[LABEL], tf.int32),
    "frames": sequence[FRAMES],
  }
  if with_annotations:
    out.update({key: sequence[key] for key in _ANNOTATIONS})
  if with_motion:
    out.update(_parse_motion(context, sequence, out))
  return out


def _parse_motion(context, sequence, out) -> dict[str, tf.Tensor]:
  grid = tf.cast(context[MOTION_GRID], tf.int32)
  check = tf.debugging.Assert(
    tf.reduce_prod(grid) > 0,
    [
      "the video has no motion field (prepare it with mgvm.datasets.prepare --motion-vectors):",
      out["id"],
    ],
  )
  with tf.control_dependencies([check]):
    n = out["num_frames"]
    vectors = tf.reshape(sequence[MOTION_VECTOR].flat_values, tf.stack([n, grid[0], grid[1], 2]))
  valid = tf.reshape(sequence[MOTION_VALID].flat_values, tf.stack([n, grid[0], grid[1]]))
  return {
    "motion": vectors,
    "motion_valid": tf.cast(valid, tf.bool),
    "motion_frame_type": tf.cast(
      tf.reshape(sequence[MOTION_FRAME_TYPE].flat_values, [n]), tf.int32
    ),
    "motion_block": tf.cast(context[MOTION_BLOCK], tf.int32),
  }
