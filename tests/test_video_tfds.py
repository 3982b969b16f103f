"""tfds builders over manual_dir (`mgvm.datasets.builders`): tiny PyAV videos in each official layout.

Every frame encodes its index (tests/video_files.py), so the stored frames are checked to be the
right ones in order. Also: labels as each format defines them, skipped files with reasons,
malformed list lines naming FILE:LINE, and the adapter that reads the shards for mgvm's pipeline.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mgvm.data import format as fmt
from mgvm.datasets import builders as vt
from mgvm.datasets import decode as dec
from mgvm.datasets.video_list import VideoListError
from tests.video_files import index_of, write_video

SMALL = vt.make_config("test_s32", short_side=32)  # 64x128 -> 32x64


def _video(path, n, rate=10, codec="libx264"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return write_video(path, n, rate, codec=codec)


def _corrupt(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(bytes(range(256)) * 8)


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _build(cls, manual, data_dir, config=SMALL, **kwargs):
  builder = cls(config=config, data_dir=str(data_dir), **kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def _rows(builder, split):
  """id -> (label, fps, num_frames, height, width, frame indices)."""
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    frames = ex["frames"]
    assert frames.shape[0] == ex["num_frames"] and frames.shape[1:] == (
      ex["height"],
      ex["width"],
      3,
    )
    out[ex["id"].decode()] = (
      int(ex["label"]),
      float(ex["fps"]),
      int(ex["num_frames"]),
      int(ex["height"]),
      int(ex["width"]),
      [index_of(f) for f in frames],
    )
  return out


def _sizes(builder):
  return {name: split.num_examples for name, split in builder.info.splits.items()}


# ------------------------------------------------------------------------------ folder + CSV


def test_folder_builder_labels_names_skips_and_adapter(tmp_path, caplog):
  m = tmp_path / "manual"
  _video(f"{m}/videos/a.mp4", 6, 10)
  _video(f"{m}/videos/sub dir/b.mp4", 4, 25)
  _corrupt(f"{m}/videos/corrupt.mp4")
  _video(f"{tmp_path}/elsewhere/c.mp4", 5, 10)  # an absolute path outside manual_dir
  _write(
    f"{m}/train.csv",
    "# comment\nvideos/a.mp4 2\nvideos/sub dir/b.mp4,0\n"
    "videos/corrupt.mp4 1\nvideos/missing.mp4 1\n",
  )
  _write(f"{m}/test.csv", f"videos/a.mp4\n{tmp_path}/elsewhere/c.mp4\n")  # unlabelled
  _write(f"{m}/classes.txt", "walk\nrun\njump\n")
  with caplog.at_level(logging.WARNING, logger="mgvm.datasets.builders"):
    builder = _build(vt.MgvmVideoFolder, m, tmp_path / "data")
  assert _sizes(builder) == {"train": 2, "test": 2}
  assert vt.class_names(builder) == ("walk", "run", "jump")
  train = _rows(builder, "train")
  assert train == {
    "videos/a": (2, 10.0, 6, 32, 64, [0, 1, 2, 3, 4, 5]),
    "videos/sub dir/b": (0, 25.0, 4, 32, 64, [0, 1, 2, 3]),
  }
  test = _rows(builder, "test")
  assert {k: v[0] for k, v in test.items()} == {"videos/a": -1, f"{tmp_path}/elsewhere/c": -1}
  assert test[f"{tmp_path}/elsewhere/c"][5] == [0, 1, 2, 3, 4]
  # The skipped files: reasons in the report next to the data, in the metadata, in the log.
  report = vt.skip_report(builder, "train")
  assert [(s["where"], s["reason"]) for s in report["skipped_files"]] == [
    (f"{m}/train.csv:4", "unreadable"),
    (f"{m}/train.csv:5", "missing"),
  ]
  assert (report["listed"], report["written"], report["frames"]) == (4, 2, 10)
  assert builder.info.metadata["counts"]["train"]["skipped_by_reason"] == {
    "missing": 1,
    "unreadable": 1,
  }
  assert os.path.isfile(builder.data_path / "train.skipped.json")
  logged = caplog.text
  assert (
    f"{m}/videos/corrupt.mp4 (unreadable" in logged
    and f"{m}/videos/missing.mp4 (missing" in logged
    and str(builder.data_path / "train.skipped.json") in logged
  )
  # A fresh builder on the same data_dir sees the metadata (class names, counts).
  again = vt.MgvmVideoFolder(config=SMALL, data_dir=str(tmp_path / "data"))
  assert vt.class_names(again) == ("walk", "run", "jump")
  _check_adapter(again, "train")
  # ... and so does tfds's read-only builder of the prepared folder (no config object needed).
  read_only = tfds.builder_from_directory(os.fspath(builder.data_path))
  assert vt.class_names(read_only) == ("walk", "run", "jump")
  assert vt.tfrecord_files(read_only, "train") == vt.tfrecord_files(builder, "train")


def test_folder_builder_names_from_labels_and_rate_cap(tmp_path):
  m = tmp_path / "manual"
  _video(f"{m}/x.mp4", 12, 25)
  _write(f"{m}/train.csv", "x.mp4 3\n")
  config = vt.make_config("test_cap", short_side=None, max_fps=12)
  builder = _build(vt.MgvmVideoFolder, m, tmp_path / "data", config=config)
  assert vt.class_names(builder) == ("0", "1", "2", "3")
  expected = dec.constant_rate_indices(np.arange(12) / 25, 12).tolist()
  assert _rows(builder, "train") == {"x": (3, 12.0, len(expected), 64, 128, expected)}


@pytest.mark.slow  # worker processes
def test_workers_do_not_change_the_bytes(tmp_path):
  m = tmp_path / "manual"
  _video(f"{m}/a.mp4", 5, 10)
  _video(f"{m}/b.mp4", 3, 10)
  _corrupt(f"{m}/c.mp4")
  _write(f"{m}/train.csv", "a.mp4 0\nc.mp4 1\nb.mp4 1\na.mp4 0\n")
  one = _build(vt.MgvmVideoFolder, m, tmp_path / "one")
  assert one.info.metadata["counts"]["train"]["skipped_by_reason"] == {
    "duplicate": 1,
    "unreadable": 1,
  }
  assert vt.skip_report(one, "train")["skipped_files"][0]["where"] == f"{m}/train.csv:4"
  # tfds.load passes builder_kwargs (a custom config, workers) to the builder.
  _, info = tfds.load(
    "mgvm_video_folder",
    split="train",
    data_dir=str(tmp_path / "two"),
    with_info=True,
    builder_kwargs={"config": SMALL, "workers": 2},
    download_and_prepare_kwargs={
      "download_config": tfds.download.DownloadConfig(manual_dir=str(m))
    },
  )
  two = tfds.builder("mgvm_video_folder", config=SMALL, data_dir=str(tmp_path / "two"))
  assert info.metadata["counts"] == one.info.metadata["counts"]
  files = [vt.tfrecord_files(b, "train") for b in (one, two)]
  assert [open(f, "rb").read() for f in files[0]] == [open(f, "rb").read() for f in files[1]]


def _check_adapter(builder, split):
  """tfrecord_files + make_parser in graph mode == fmt.parse_example's dict == what tfds stored."""
  files = vt.tfrecord_files(builder, split)
  assert files and all(os.path.isfile(f) for f in files)
  ds = tf.data.TFRecordDataset(files).map(vt.make_parser(builder))  # traced: graph mode
  reference = tf.data.Dataset.from_tensors(
    fmt.encode_example(video_id="r", fps=10.0, jpeg_frames=[b"x"], height=1, width=1)
  ).map(fmt.parse_example)
  assert {k: (s.dtype, s.shape.as_list()) for k, s in ds.element_spec.items()} == {
    k: (s.dtype, s.shape.as_list()) for k, s in reference.element_spec.items()
  }
  stored = {}
  for ex in tfds.as_numpy(
    builder.as_dataset(split=split, decoders={"frames": tfds.decode.SkipDecoding()})
  ):
    stored[ex["id"].decode()] = ex
  parsed = {}
  for ex in ds.as_numpy_iterator():
    parsed[ex["id"].decode()] = ex
  assert parsed.keys() == stored.keys()
  for vid, ex in parsed.items():
    want = stored[vid]
    assert list(ex["frames"]) == list(want["frames"])  # the same JPEG bytes
    assert [index_of(tf.io.decode_jpeg(f).numpy()) for f in ex["frames"]] == list(
      range(len(ex["frames"]))
    )
    for key in ("fps", "num_frames", "height", "width", "label"):
      assert ex[key] == want[key], key
    assert ex["num_frames"] == len(ex["frames"])


# ------------------------------------------------------------------------------ UCF101


@pytest.mark.slow
def test_ucf101_split_lists_and_labels_from_class_index(tmp_path):
  m = tmp_path / "manual"
  classes = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
  lists = f"{m}/ucfTrainTestlist"
  _write(f"{lists}/classInd.txt", "".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)))
  _video(f"{m}/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 4, 25, codec="mpeg4")
  _video(f"{m}/UCF-101/Archery/v_Archery_g01_c01.avi", 5, 25, codec="mpeg4")
  # The lists spell this class's files HandStandPushups; some copies of the videos do not.
  _video(f"{m}/UCF-101/HandstandPushups/v_HandstandPushups_g01_c02.avi", 3, 25, codec="mpeg4")
  _write(f"{lists}/trainlist01.txt", "Archery/v_Archery_g01_c01.avi 2\n")
  _write(f"{lists}/testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n")
  _write(
    f"{lists}/trainlist02.txt",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
    "HandstandPushups/v_HandStandPushups_g01_c02.avi 3\r\n",
  )
  _write(f"{lists}/testlist02.txt", "Archery/v_Archery_g01_c01.avi\r\n")
  # tfds.load with the registered name and the split2 config, offline.
  ds, info = tfds.load(
    "mgvm_ucf101/split2",
    data_dir=str(tmp_path / "data"),
    with_info=True,
    download_and_prepare_kwargs={
      "download_config": tfds.download.DownloadConfig(manual_dir=str(m))
    },
  )
  assert info.metadata["class_names"] == classes
  assert {k: v.num_examples for k, v in info.splits.items()} == {"train": 2, "test": 1}
  builder = tfds.builder("mgvm_ucf101/split2", data_dir=str(tmp_path / "data"))
  assert _rows(builder, "train") == {
    "v_ApplyEyeMakeup_g08_c01": (0, 25.0, 4, 64, 128, [0, 1, 2, 3]),
    "v_HandStandPushups_g01_c02": (2, 25.0, 3, 64, 128, [0, 1, 2]),
  }
  assert _rows(builder, "test") == {"v_Archery_g01_c01": (1, 25.0, 5, 64, 128, list(range(5)))}
  split1 = _build(vt.MgvmUcf101, m, tmp_path / "data", config="split1")
  assert {k: v[0] for k, v in _rows(split1, "test").items()} == {"v_ApplyEyeMakeup_g08_c01": 0}
  _train_and_evaluate_on(tmp_path, "mgvm_ucf101/split2", num_classes=3, eval_videos=1)


def _train_and_evaluate_on(tmp_path, tfds_name, *, num_classes, eval_videos):
  """`config.data.source="tfds"`: train.py's loop and eval.py read the built data set."""
  from configs import finetune
  from mgvm.data import sources
  from mgvm.run import evaluate as eval_run
  from mgvm.run import train as train_run
  from tests.helpers import tiny

  config = tiny(
    finetune.get_config("runlocal"), total_steps=2, log_every_steps=1, checkpoint_every_steps=2
  )
  config.optim.warmup_steps = 1
  config.data.update(
    source="tfds",
    tfds_name=tfds_name,
    dir=str(tmp_path / "data"),
    target_fps=10.0,
    shuffle_buffer=4,
  )
  source = sources.resolve(config.data)
  assert source.num_classes == num_classes and source.parse_fn is not None
  config.eval.update(split="test", num_clips=2, num_crops=3)
  assert train_run.train(config, str(tmp_path / "run"), log=lambda _: None)["step"] == 2
  result = eval_run.evaluate(config, str(tmp_path / "run"), split="test", log=lambda _: None)
  assert result["num_videos"] == eval_videos and result["views"] == "2 clips x 3 crops"
  config.data.tfds_name = "mgvm_ucf101/split3"  # never built: says how to build it
  with pytest.raises(FileNotFoundError, match="download_and_prepare"):
    sources.resolve(config.data)


# ------------------------------------------------------------------------------ HMDB51


def test_hmdb51_split_files_route_train_test_unused(tmp_path):
  m = tmp_path / "manual"
  splits = f"{m}/testTrainMulti_7030_splits"
  # "climb" < "climb_stairs": class names with underscores, sorted alphabetically.
  rows = {
    "climb_stairs": [("cs_a.avi", 1, 3), ("cs_b.avi", 2, 4), ("cs_c.avi", 0, 2)],
    "brush_hair": [("bh_a.avi", 1, 5)],
    "climb": [("c_a.avi", 2, 6)],
  }
  for cls, videos in rows.items():
    _write(f"{splits}/{cls}_test_split1.txt", "".join(f"{v} {s} \n" for v, s, _ in videos))
    _write(f"{splits}/{cls}_test_split2.txt", "".join(f"{v} 1 \n" for v, _, _ in videos))
    for v, _, n in videos:
      _video(f"{m}/hmdb51/{cls}/{v}", n, 30, codec="mpeg4")
  builder = _build(
    vt.MgvmHmdb51,
    m,
    tmp_path / "data",
    config=vt.make_config("test_split1", split_number=1, short_side=32),
  )
  assert vt.class_names(builder) == ("brush_hair", "climb", "climb_stairs")
  assert _rows(builder, "train") == {
    "brush_hair/bh_a": (0, 30.0, 5, 32, 64, list(range(5))),
    "climb_stairs/cs_a": (2, 30.0, 3, 32, 64, [0, 1, 2]),
  }
  assert {k: (v[0], v[5]) for k, v in _rows(builder, "test").items()} == {
    "climb_stairs/cs_b": (2, [0, 1, 2, 3]),
    "climb/c_a": (1, list(range(6))),
  }


# ------------------------------------------------------------------------------ Kinetics


def test_kinetics_csvs_subfolders_missing_counted_test_unlabelled(tmp_path, caplog):
  m = tmp_path / "manual"
  _write(
    f"{m}/train.csv",
    "label,youtube_id,time_start,time_end,split,is_cc\n"
    "riding a bike,bike0000001,4,14,train,0\n"
    '"passing American football (not in game)",foot_ball-1,0,10,train,0\n'
    "abseiling,gone0000001,100,110,train,0\n",
  )
  _write(
    f"{m}/validate.csv",
    "label,youtube_id,time_start,time_end,split\nabseiling,abs00000001,30,40,val\n",
  )
  _write(
    f"{m}/test.csv",
    "youtube_id,time_start,time_end,split\ntest0000001,7,17,test\nnotthere001,1,11,test\n",
  )
  _video(f"{m}/train/riding a bike/bike0000001_000004_000014.mp4", 5, 10)
  _video(f"{m}/train/foot_ball-1_000000_000010.webm", 4, 10, codec="libvpx")  # flat
  _corrupt(f"{m}/train/some_label/foot_ball-1_000000_000010.mkv")  # .webm preferred over .mkv
  _video(f"{m}/validate/abseiling/abs00000001_000030_000040.mp4", 3, 10)
  _video(f"{m}/test/test0000001_000007_000017.mp4", 4, 10)
  with caplog.at_level(logging.WARNING, logger="mgvm.datasets.builders"):
    builder = _build(vt.MgvmKinetics, m, tmp_path / "data")
  names = ("abseiling", "passing American football (not in game)", "riding a bike")
  assert vt.class_names(builder) == names
  assert _sizes(builder) == {"train": 2, "validation": 1, "test": 1}
  assert _rows(builder, "train") == {
    "bike0000001_000004_000014": (2, 10.0, 5, 32, 64, list(range(5))),
    "foot_ball-1_000000_000010": (1, 10.0, 4, 32, 64, list(range(4))),
  }
  assert {k: v[0] for k, v in _rows(builder, "validation").items()} == {
    "abs00000001_000030_000040": 0
  }
  assert {k: v[0] for k, v in _rows(builder, "test").items()} == {"test0000001_000007_000017": -1}
  counts = builder.info.metadata["counts"]
  assert counts["train"]["skipped_by_reason"] == {"missing": 1}
  assert counts["test"]["skipped_by_reason"] == {"missing": 1}
  report = vt.skip_report(builder, "train")
  assert [(s["where"], s["reason"]) for s in report["skipped_files"]] == [
    (f"{m}/train.csv:4", "missing")
  ]
  assert "gone0000001_000100_000110" in caplog.text and "(missing)" in caplog.text


# ------------------------------------------------------------------------------ SSv2


def test_ssv2_templates_map_through_labels_json(tmp_path):
  m = tmp_path / "manual"
  labels = {
    "Approaching something with your camera": "0",
    "Holding something next to something": "1",
    "Pushing something from left to right": "2",
  }
  _write(f"{m}/labels/something-something-v2-labels.json", json.dumps(labels))
  _write(
    f"{m}/labels/something-something-v2-train.json",
    json.dumps(
      [
        {
          "id": "78687",
          "label": "holding potato next to vicks vaporub bottle",
          "template": "Holding [something] next to [something]",
          "placeholders": ["potato", "vicks vaporub bottle"],
        },
        {
          "id": "42326",
          "label": "approaching a cup with your camera",
          "template": "Approaching [something] with your camera",
          "placeholders": ["a cup"],
        },
      ],
      indent=1,
    ),
  )
  _write(
    f"{m}/labels/something-something-v2-validation.json",
    json.dumps(
      [
        {
          "id": "74225",
          "label": "pushing a pen from left to right",
          "template": "Pushing [something] from left to right",
          "placeholders": ["a pen"],
        }
      ]
    ),
  )
  _write(f"{m}/labels/something-something-v2-test.json", json.dumps([{"id": "1420"}]))
  videos = f"{m}/20bn-something-something-v2"
  _video(f"{videos}/78687.webm", 4, 12, codec="libvpx")
  _video(f"{videos}/42326.webm", 3, 12, codec="libvpx")
  _video(f"{videos}/74225.webm", 5, 12, codec="libvpx")
  _video(f"{videos}/1420.mp4", 2, 12)  # converted copies (.mp4) are used when there is no .webm
  builder = _build(vt.MgvmSsv2, m, tmp_path / "data")
  assert vt.class_names(builder) == tuple(labels)
  assert _rows(builder, "train") == {
    "78687": (1, 12.0, 4, 32, 64, [0, 1, 2, 3]),
    "42326": (0, 12.0, 3, 32, 64, [0, 1, 2]),
  }
  assert {k: v[0] for k, v in _rows(builder, "validation").items()} == {"74225": 2}
  assert {k: v[0] for k, v in _rows(builder, "test").items()} == {"1420": -1}
  _check_adapter(builder, "test")


# ------------------------------------------------------------------------------ malformed lists


def _ucf_lists(m, train_line):
  _write(f"{m}/ucfTrainTestlist/classInd.txt", "1 Archery\n2 Biking\n")
  _write(f"{m}/ucfTrainTestlist/trainlist01.txt", f"Archery/v_Archery_g01_c01.avi 1\n{train_line}")
  _write(f"{m}/ucfTrainTestlist/testlist01.txt", "Biking/v_Biking_g01_c01.avi\n")


@pytest.mark.parametrize(
  "case", ["folder", "ucf_label", "ucf_folder", "hmdb", "kinetics", "kinetics_label", "ssv2"]
)
def test_malformed_lines_fail_at_once_naming_file_and_line(tmp_path, case):
  m = tmp_path / "manual"
  if case == "folder":
    cls, where = vt.MgvmVideoFolder, f"{m}/train.csv:2"
    _write(f"{m}/train.csv", "a.mp4 1\nb.mp4 one\n")
    error = VideoListError
  elif case.startswith("ucf"):
    cls, where, error = vt.MgvmUcf101, f"{m}/ucfTrainTestlist/trainlist01.txt:2", vt.ManualDirError
    _ucf_lists(
      m,
      "Archery/v_Archery_g02_c01.avi 2\n"
      if case == "ucf_label"
      else "Rowing/v_Rowing_g01_c01.avi 1\n",
    )
  elif case == "hmdb":
    cls, where, error = vt.MgvmHmdb51, None, vt.ManualDirError
    path = f"{m}/testTrainMulti_7030_splits/jump_test_split1.txt"
    _write(path, "a.avi 1\nb.avi 3\n")
    where = f"{path}:2"
  elif case.startswith("kinetics"):
    cls, where, error = vt.MgvmKinetics, f"{m}/validate.csv:3", vt.ManualDirError
    _write(f"{m}/train.csv", "label,youtube_id,time_start,time_end,split\njump,aaa,0,10,train\n")
    _write(
      f"{m}/validate.csv",
      "label,youtube_id,time_start,time_end,split\n"
      "jump,bbb,0,10,val\n"
      + ("swim,ccc,0,10,val\n" if case == "kinetics_label" else "jump,ccc,zero,10,val\n"),
    )
  else:
    cls, error = vt.MgvmSsv2, vt.ManualDirError
    _write(f"{m}/labels/something-something-v2-labels.json", '{"Jumping": "0"}')
    path = f"{m}/labels/something-something-v2-train.json"
    _write(
      path,
      json.dumps(
        [{"id": "1", "template": "Jumping"}, {"id": "2", "template": "Flying [something]"}]
      ),
    )
    where = f"{path} entry 2"
  with pytest.raises(error) as info:
    _build(cls, m, tmp_path / "data")
  assert where in str(info.value)
  assert not os.path.exists(tmp_path / "data" / cls.name / SMALL.name / "1.0.0")


def test_nothing_usable_is_an_error_not_an_empty_data_set(tmp_path):
  m = tmp_path / "manual"
  _write(f"{m}/train.csv", "gone.mp4 0\n")
  with pytest.raises(vt.ManualDirError, match="no split has any video"):
    _build(vt.MgvmVideoFolder, m, tmp_path / "data")
  _corrupt(f"{m}/bad.mp4")
  _write(f"{m}/train.csv", "bad.mp4 0\n")
  with pytest.raises(vt.ManualDirError, match="none of the 1 listed videos could be used"):
    _build(vt.MgvmVideoFolder, m, tmp_path / "data")
