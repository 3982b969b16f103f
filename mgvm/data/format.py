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
The feature lists after `image/encoded` are optional (real videos have none).
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
) -> bytes:
  """Serialises one video. `annotations` maps a feature-list key above to one array per frame."""
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


def parse_example(serialized: tf.Tensor, *, with_annotations: bool = False) -> dict[str, tf.Tensor]:
  """Parses one serialised video (graph-mode safe). Frames stay JPEG-encoded.

  Returns `id` (string), `fps` (float32), `num_frames` (int32), `height`, `width` (int32),
  `label` (int32), `frames` [num_frames] (string); with `with_annotations`, the feature lists
  above as ragged [num_frames, None] tensors under their keys.
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
  return out
