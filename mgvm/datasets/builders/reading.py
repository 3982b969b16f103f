"""Reading a built data set from mgvm's pipeline: its shard files, class names and a parser.

`tfrecord_files(builder, split)` and `make_parser(builder)` read the built shards without
decoding frames (the parser returns `mgvm.data.format.parse_example`'s dict).
"""

from __future__ import annotations

import functools
import json
import os

import tensorflow as tf
import tensorflow_datasets as tfds

from mgvm.datasets.builders.base import SKIP_REPORT


def class_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
  """The class names of a prepared data set (label k = name k)."""
  return tuple(builder.info.metadata.get("class_names", ()))


def skip_report(builder: tfds.core.DatasetBuilder, split: str) -> dict:
  """The `<split>.skipped.json` written when `split` was built."""
  path = builder.data_path / SKIP_REPORT.format(split=split)
  return json.loads(path.read_text())


def tfrecord_files(builder: tfds.core.DatasetBuilder, split: str) -> list[str]:
  """The shard paths of a prepared split (TFRecord files of tfds-serialised `tf.train.Example`s)."""
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"{builder.info.full_name} is not prepared under "
      f"{builder.data_dir}: run download_and_prepare first"
    )
  file_format = builder.info.file_format
  if file_format is not None and file_format != tfds.core.FileFormat.TFRECORD:
    raise ValueError(f"{builder.info.full_name} is stored as {file_format.value}, not tfrecord")
  if split not in builder.info.splits:
    raise KeyError(
      f"{builder.info.full_name} has no split {split!r}; it has {sorted(builder.info.splits)}"
    )
  return [os.fspath(p) for p in builder.info.splits[split].filepaths]


class _KeepJpeg(tfds.decode.SkipDecoding):
  """SkipDecoding that also skips tfds's per-frame `tf.map_fn` for a Sequence of images."""

  def decode_batch_example(self, serialized_example):
    return serialized_example


def parse_example(
  serialized: tf.Tensor, features: tfds.features.FeaturesDict
) -> dict[str, tf.Tensor]:
  """One record of these builders → exactly `mgvm.data.format.parse_example`'s dict.

  Graph-mode safe; the frames stay JPEG bytes ([num_frames] tf.string, not decoded).
  """
  ex = features.deserialize_example(serialized, decoders={"frames": _KeepJpeg()})
  return {
    "id": ex["id"],
    "fps": tf.cast(ex["fps"], tf.float32),
    "num_frames": tf.cast(ex["num_frames"], tf.int32),
    "height": tf.cast(ex["height"], tf.int32),
    "width": tf.cast(ex["width"], tf.int32),
    "label": tf.cast(ex["label"], tf.int32),
    "frames": ex["frames"],
  }


def make_parser(builder: tfds.core.DatasetBuilder):
  """`serialized -> dict` for `tf.data.TFRecordDataset(tfrecord_files(...)).map(...)`."""
  return functools.partial(parse_example, features=builder.info.features)
