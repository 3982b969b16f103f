"""The built-in synthetic motion data set: made locally from a seed, the motion defines the class.

Every video shows a textured background (optionally panning) and 1-3 textured star-shaped
objects. The *actors* move by their class (`CLASSES`); *distractors* drift slowly and jitter.
One frame cannot tell the classes apart (docs/synthetic.md).

The modules follow the seams of the generator: `config` (the knobs and their defaults),
`scene` (what moves where), `render` (frames, boxes, flow), `write` (records, shards, reuse) and
`builder` (the same set as a tfds builder). Importing this package loads no TensorFlow.

CLI: `python -m mgvm.datasets.synthetic --out DIR [--train N ...]`.
"""

from mgvm.datasets.synthetic.config import (
  CLASSES,
  DEFAULT_SPLITS,
  DISTRACTOR,
  TRANSLATIONS,
  VIDEOS_PER_SHARD,
  SyntheticConfig,
  check_class,
  identity_fields,
)
from mgvm.datasets.synthetic.render import Video, render_scene, render_video
from mgvm.datasets.synthetic.scene import Scene, SceneObject, clip_label, sample_scene
from mgvm.datasets.synthetic.write import (
  INFO_FILE,
  VERSION,
  check_splits,
  encode_jpeg,
  encode_video,
  ensure_dataset,
  main,
  read_info,
  split_files,
  write_dataset,
)

__all__ = [
  "CLASSES",
  "DEFAULT_SPLITS",
  "DISTRACTOR",
  "INFO_FILE",
  "TRANSLATIONS",
  "VERSION",
  "VIDEOS_PER_SHARD",
  "Scene",
  "SceneObject",
  "SyntheticConfig",
  "Video",
  "check_class",
  "check_splits",
  "clip_label",
  "encode_jpeg",
  "encode_video",
  "ensure_dataset",
  "identity_fields",
  "main",
  "read_info",
  "render_scene",
  "render_video",
  "sample_scene",
  "split_files",
  "write_dataset",
]
