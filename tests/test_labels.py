"""Labels are checked against the classes: at prepare time (`--classes`), from the prepared
summary before training (`num_classes_from_data`), and per record at the first batch (pipeline)."""

from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.data import pipeline, sources
from mgvm.datasets import prepare
from mgvm.tasks import common
from tests.video_files import write_video


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
  """Two 3-frame videos listed with labels 0 and 5, prepared (no class list)."""
  root = tmp_path_factory.mktemp("labelled")
  write_video(root / "a.mp4", 3, 10)
  write_video(root / "b.mp4", 3, 10)
  csv = root / "train.csv"
  csv.write_text("# comment\na.mp4 0\nb.mp4 5\n")
  out = root / "out"
  summary = prepare.prepare(str(csv), str(out), root=str(root), workers=1, log=lambda _: None)
  return root, csv, out, summary


def _config(out, num_classes=None):
  data = ml_collections.ConfigDict(dict(source="tfrecord", dir=str(out)))
  return ml_collections.ConfigDict(dict(num_classes=num_classes, data=data))


def test_prepare_records_the_labels_and_the_video_of_the_largest(labelled):
  root, csv, out, summary = labelled
  assert summary["max_label"] == 5 and summary["labels"] == {"0": 1, "5": 1}
  assert summary["max_label_video"] == {"line": 3, "path": str(root / "b.mp4"), "id": "b"}
  gathered = json.loads((out / "summary.json").read_text())
  assert gathered["max_label"] == 5 and "classes" not in gathered
  assert gathered["max_label_video"] == {
    "split": "train",
    "csv": str(csv),
    "line": 3,
    "path": str(root / "b.mp4"),
    "id": "b",
  }


def test_a_label_outside_the_classes_stops_prepare_naming_the_line(labelled, tmp_path):
  root, csv, _, _ = labelled
  classes = tmp_path / "classes.txt"
  classes.write_text("zero\none\n\n")
  out = tmp_path / "out"
  with pytest.raises(SystemExit, match="train.csv:3: .*b.mp4: label 5 is not a class"):
    prepare.main(
      ["--csv", str(csv), "--root", str(root), "--out", str(out), "--classes", str(classes)]
    )
  assert not list(out.glob("*.tfrecord"))  # failed before decoding anything
  classes.write_text("zero\none\n\nthree\n")
  with pytest.raises(ValueError, match=r"classes.txt:3: empty class name"):
    prepare.prepare(str(csv), str(out), root=str(root), classes=str(classes))


def test_the_class_list_is_stored_read_and_kept_equal_across_splits(labelled, tmp_path):
  root, csv, _, _ = labelled
  one = tmp_path / "one.txt"
  one.write_text("\n".join(f"c{k}" for k in range(6)) + "\n")
  out = tmp_path / "out"
  prepare.prepare(
    str(csv), str(out), root=str(root), split="val", classes=str(one), log=lambda _: None
  )
  assert json.loads((out / "summary.json").read_text())["classes"] == [f"c{k}" for k in range(6)]
  source = sources.resolve(_config(out).data)
  assert source.class_names == tuple(f"c{k}" for k in range(6)) and source.max_label == 5
  assert common.num_classes_from_data(_config(out), source) == 6
  other = tmp_path / "other.txt"
  other.write_text("\n".join(f"d{k}" for k in range(6)) + "\n")
  with pytest.raises(ValueError, match="splits differ in their classes"):
    prepare.prepare(str(csv), str(out), root=str(root), split="train", classes=str(other))
  assert not list(out.glob("train-*"))


def test_num_classes_below_the_largest_label_fails_before_training(labelled):
  root, csv, out, _ = labelled
  source = sources.resolve(_config(out).data)
  assert source.max_label == 5 and source.class_names == ()
  with pytest.raises(ValueError) as e:
    common.num_classes_from_data(_config(out, 2), source)
  message = str(e.value)
  for part in ("label 5", "[0, 2)", str(out / "summary.json"), str(root / "b.mp4"), str(csv)):
    assert part in message
  assert common.num_classes_from_data(_config(out, 6), source) == 6
  with pytest.raises(ValueError, match=r"set config.num_classes.*suggest num_classes >= 6"):
    common.num_classes_from_data(_config(out), source)
  listed = sources.Source("/d", {}, ("a", "b"), max_label=5, label_info="/d/summary.json: b")
  with pytest.raises(ValueError, match=r"label 5 is outside \[0, 2\).*lists 2 classes"):
    common.num_classes_from_data(_config(out), listed)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
  """One shard: video 'ok' labelled 0, then 'bäd' labelled 5; four 32-px frames each."""
  path = str(tmp_path_factory.mktemp("shard") / "train-0.tfrecord")
  jpeg = tf.io.encode_jpeg(np.full((32, 32, 3), 128, np.uint8)).numpy()
  with tf.io.TFRecordWriter(path) as writer:
    for video_id, label in (("ok", 0), ("bäd", 5)):
      writer.write(
        fmt.encode_example(
          video_id=video_id, fps=10.0, jpeg_frames=[jpeg] * 4, height=32, width=32, label=label
        )
      )
  return path


@pytest.mark.parametrize("mode", ["finetune", "eval"])
def test_the_pipeline_names_a_record_whose_label_is_outside_the_classes(shard, mode):
  def batches(num_classes):
    ds = pipeline.make_dataset(
      shard,
      mode=mode,
      num_frames=2,
      image_size=32,
      batch_size=2,
      frame_stride=1,
      shuffle_buffer=2,
      num_classes=num_classes,
    )
    return next(pipeline.numpy_batches(ds))

  with pytest.raises(pipeline.BadDataError) as e:
    batches(2)
  assert str(e.value) == (
    "bad data: video/id 'bäd': label 5 is outside [0, 2) (num_classes=2; -1 = unlabelled)"
  )
  assert sorted(batches(6)["label"].tolist()) == [0, 5]
