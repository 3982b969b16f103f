"""`python -m mgvm.datasets.prepare`: a folder of real (PyAV-written) videos → TFRecord shards.

Broken files are skipped and listed by line and reason; the stored frames are exactly the
source frames the timestamps call for; a rerun resumes; workers do not change the bytes.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.datasets import prepare
from tests.video_files import index_of as _index
from tests.video_files import write_video as _write


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  _write(root / "ntsc.mp4", 30, Fraction(30000, 1001))
  _write(root / "clip.webm", 12, 24, codec="libvpx-vp9")
  _write(root / "short.mp4", 3, 30)
  (root / "empty.mp4").write_bytes(b"")
  (root / "corrupt.mp4").write_bytes(bytes(range(256)) * 20)
  csv = root / "train.csv"
  csv.write_text(
    "ntsc.mp4 4\nclip.webm 1\nempty.mp4 2\nmissing.mp4 0\ncorrupt.mp4 3\nshort.mp4 0\n"
  )
  return root, csv


def _read(out, split="train"):
  rows = []
  for path in sorted(glob.glob(os.path.join(out, f"{split}-*.tfrecord"))):
    for record in tf.data.TFRecordDataset(path):
      ex = fmt.parse_example(record)
      frames = [_index(tf.io.decode_jpeg(f).numpy()) for f in ex["frames"]]
      rows.append(
        (
          ex["id"].numpy().decode(),
          float(ex["fps"]),
          int(ex["label"]),
          int(ex["num_frames"]),
          int(ex["height"]),
          frames,
        )
      )
  return rows


def test_prepare_writes_the_usable_videos_and_lists_the_rest(videos, tmp_path):
  root, csv = videos
  summary = prepare.prepare(
    str(csv), str(tmp_path), root=str(root), workers=1, videos_per_shard=2, log=lambda _: None
  )
  assert (summary["listed"], summary["written"], summary["skipped"]) == (6, 3, 3)
  assert summary["skipped_by_reason"] == {"empty": 1, "missing": 1, "unreadable": 1}
  assert [(s["line"], s["reason"]) for s in summary["skipped_files"]] == [
    (3, "empty"),
    (4, "missing"),
    (5, "unreadable"),
  ]
  assert summary["frames"] == 30 + 12 + 3
  assert json.loads((tmp_path / "train.summary.json").read_text()) == summary
  rows = _read(tmp_path)
  assert [(r[0], r[2], r[3]) for r in rows] == [("ntsc", 4, 30), ("clip", 1, 12), ("short", 0, 3)]
  assert rows[0][1] == pytest.approx(30000 / 1001) and rows[1][1] == 24
  assert [r[5] for r in rows] == [list(range(30)), list(range(12)), [0, 1, 2]]
  assert len(summary["shards"]) == 3 and not glob.glob(str(tmp_path / ".*.tmp"))


def test_max_fps_and_short_side_are_what_is_stored(videos, tmp_path):
  root, csv = videos
  prepare.prepare(
    str(csv),
    str(tmp_path),
    root=str(root),
    max_fps=10,
    short_side=32,
    workers=1,
    log=lambda _: None,
  )
  ntsc = _read(tmp_path)[0]
  assert ntsc[1] == 10 and ntsc[4] == 32
  assert ntsc[5] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]  # nearest to k / 10 s


@pytest.mark.slow  # worker processes
def test_rerun_resumes_and_workers_do_not_change_the_bytes(videos, tmp_path):
  root, csv = videos
  one, two = tmp_path / "one", tmp_path / "two"
  prepare.prepare(
    str(csv), str(one), root=str(root), workers=1, videos_per_shard=2, log=lambda _: None
  )
  prepare.prepare(
    str(csv), str(two), root=str(root), workers=2, videos_per_shard=2, log=lambda _: None
  )
  names = sorted(os.path.basename(p) for p in glob.glob(str(one / "*.tfrecord")))
  assert names == sorted(os.path.basename(p) for p in glob.glob(str(two / "*.tfrecord")))
  for name in names:
    assert (one / name).read_bytes() == (two / name).read_bytes()
  # Interrupted run: one shard lost → the rerun writes only that one.
  os.remove(one / names[1])
  mtimes = {n: os.path.getmtime(one / n) for n in (names[0], names[2])}
  messages = []
  summary = prepare.prepare(
    str(csv), str(one), root=str(root), workers=1, videos_per_shard=2, log=messages.append
  )
  assert "2 of 3 shards already written" in messages[0] and "shard 1/1" in messages[1]
  assert {n: os.path.getmtime(one / n) for n in mtimes} == mtimes
  assert (one / names[1]).read_bytes() == (two / names[1]).read_bytes()
  assert summary["written"] == 3


def test_decoder_versions_are_recorded_and_a_mix_warns(videos, tmp_path):
  """Shard infos and both summaries name PyAV / FFmpeg / Pillow; resuming shards made by another
  decoder warns naming both, and the summaries list every decoder found."""
  import av
  import PIL

  root, _ = videos
  csv = tmp_path / "train.csv"
  csv.write_text("short.mp4 0\nclip.webm 1\n")
  out = tmp_path / "out"
  run = dict(root=str(root), workers=1, videos_per_shard=1)
  summary = prepare.prepare(str(csv), str(out), log=lambda _: None, **run)
  decoder = summary["decoder"]
  assert decoder["pyav"] == av.__version__ and decoder["pillow"] == PIL.__version__
  assert decoder["ffmpeg"] == str(av.ffmpeg_version_info)
  assert decoder["libraries"] == {
    name: ".".join(map(str, v)) for name, v in av.library_versions.items()
  }
  assert decoder == prepare.decoder_versions()
  shards = summary["shards"]
  infos = {n: out / prepare.SHARD_INFO_DIR / f"{n}.json" for n in shards}
  assert all(json.loads(p.read_text())["decoder"] == decoder for p in infos.values())
  assert summary["decoders"] == [{"decoder": decoder, "shards": shards}]
  gathered = json.loads((out / "summary.json").read_text())
  assert gathered["decoder"] == decoder and gathered["decoders"] == summary["decoders"]
  # Shard 0 recorded as made by another build; shard 1 lost: the rerun resumes shard 0.
  info = json.loads(infos[shards[0]].read_text())
  info["decoder"]["pyav"] = "0.0.1"
  info["decoder"]["libraries"]["libavcodec"] = "1.2.3"
  infos[shards[0]].write_text(json.dumps(info))
  os.remove(out / shards[1])
  messages = []
  summary = prepare.prepare(str(csv), str(out), log=messages.append, **run)
  warnings = [m for m in messages if "WARNING" in m]
  assert len(warnings) == 1 and shards[0] in warnings[0], messages
  assert "PyAV 0.0.1" in warnings[0] and f"PyAV {av.__version__}" in warnings[0]
  assert f"libavcodec: 1.2.3 -> {decoder['libraries']['libavcodec']}" in warnings[0]
  assert summary["decoder"] is None
  assert summary["decoders"] == [
    {"decoder": info["decoder"], "shards": [shards[0]]},
    {"decoder": decoder, "shards": [shards[1]]},
  ]
  gathered = json.loads((out / "summary.json").read_text())
  assert gathered["decoder"] is None and gathered["decoders"] == summary["decoders"]
  # Another split prepared with this decoder is warned about the mix too.
  messages = []
  prepare.prepare(str(csv), str(out), split="val", log=messages.append, **run)
  assert [m for m in messages if "WARNING" in m and "split train of" in m], messages
  gathered = json.loads((out / "summary.json").read_text())
  assert [g["shards"] for g in gathered["decoders"]] == [
    [shards[0]],
    [shards[1], "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"],
  ]


def test_rerun_with_another_shard_size_leaves_no_stale_shards(videos, tmp_path):
  root, csv = videos
  for per_shard in (2, 3):
    summary = prepare.prepare(
      str(csv),
      str(tmp_path),
      root=str(root),
      workers=1,
      videos_per_shard=per_shard,
      log=lambda _: None,
    )
  assert sorted(os.listdir(tmp_path / prepare.SHARD_INFO_DIR)) == [
    f"{name}.json" for name in summary["shards"]
  ]
  assert (
    sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.tfrecord")))
    == (summary["shards"])
    == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  )
  assert [r[0] for r in _read(tmp_path)] == ["ntsc", "clip", "short"]


@pytest.mark.slow
def test_cli_names_the_bad_line(videos, tmp_path):
  root, _ = videos
  bad = tmp_path / "bad.csv"
  bad.write_text("ntsc.mp4 4\nclip.webm four\n")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "mgvm.datasets.prepare",
      "--csv",
      str(bad),
      "--root",
      str(root),
      "--out",
      str(tmp_path / "out"),
    ],
    capture_output=True,
    text=True,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert proc.returncode != 0 and "bad.csv:2: label 'four' is not an integer" in proc.stderr


@pytest.mark.slow
def test_cli_shows_progress_and_writes_the_summary(videos, tmp_path):
  root, csv = videos
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "mgvm.datasets.prepare",
      "--csv",
      str(csv),
      "--root",
      str(root),
      "--out",
      str(tmp_path),
      "--workers",
      "1",
      "--videos-per-shard",
      "3",
    ],
    capture_output=True,
    text=True,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "prepare train: 100%" in proc.stderr and "6/6" in proc.stderr  # the tqdm bar
  assert "3 of 6 videos written, 3 skipped" in proc.stdout
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["splits"]["train"]["skipped_by_reason"] == {
    "empty": 1,
    "missing": 1,
    "unreadable": 1,
  }


@pytest.mark.slow
def test_prepared_videos_train_and_evaluate(videos, tmp_path):
  """The shards feed `train.py`'s loop and `eval.py` unchanged (`data.source=tfrecord`)."""
  from configs import finetune
  from mgvm.run import evaluate as eval_run
  from mgvm.run import train as train_run
  from tests.helpers import tiny

  root, csv = videos
  out = tmp_path / "data"
  prepare.prepare(str(csv), str(out), root=str(root), split="train", workers=1, log=lambda _: None)
  prepare.prepare(str(csv), str(out), root=str(root), split="val", workers=1, log=lambda _: None)
  gathered = json.loads((out / "summary.json").read_text())  # every split, plus totals
  assert sorted(gathered["splits"]) == ["train", "val"]
  assert (gathered["listed"], gathered["written"], gathered["skipped"]) == (12, 6, 6)
  assert gathered["splits"]["val"] == json.loads((out / "val.summary.json").read_text())
  config = tiny(
    finetune.get_config("runlocal"),
    num_classes=5,
    total_steps=2,
    log_every_steps=1,
    checkpoint_every_steps=2,
  )
  config.optim.warmup_steps = 1
  config.data.update(source="tfrecord", dir=str(out), target_fps=10.0, shuffle_buffer=4)
  config.eval.update(split="val", num_clips=2, num_crops=1)
  assert train_run.train(config, str(tmp_path / "run"), log=lambda _: None)["step"] == 2
  result = eval_run.evaluate(config, str(tmp_path / "run"), split="val", log=lambda _: None)
  assert result["num_videos"] == 3


def test_ava_boxes_become_keyframes(tmp_path):
  """--boxes: AVA rows at seconds 1 and 2 of a 10 fps video land on frames 10 and 20."""
  from mgvm.data import detection

  root = tmp_path / "movies"
  root.mkdir()
  _write(root / "movie.mp4", 30, 10)
  (root / "list.csv").write_text("movie.mp4 0\n")
  (root / "boxes.csv").write_text(
    "movie,1,0.1,0.2,0.5,0.6,3,0\n"  # person 0 at 1 s: actions 3 and 1
    "movie,1,0.1,0.2,0.5,0.6,1,0\n"
    "movie,2,0.0,0.0,0.25,0.5,2,1\n"  # person 1 at 2 s
    "movie,9,0.0,0.0,0.25,0.5,2,1\n"  # past the 3-s video
    "other,1,0.0,0.0,0.25,0.5,2,1\n"
  )  # a video that is not listed
  out = str(tmp_path / "out")
  summary = prepare.prepare(
    str(root / "list.csv"),
    out,
    root=str(root),
    split="val",
    boxes=str(root / "boxes.csv"),
    log=lambda _: None,
  )
  assert summary["annotated_frames"] == 2 and summary["boxes_outside"] == 1
  ds = detection.make_detection_dataset(
    sorted(glob.glob(os.path.join(out, "val-*"))),
    mode="eval",
    num_frames=4,
    image_size=32,
    batch_size=2,
    num_classes=5,
    max_boxes=2,
    frame_stride=1,
    keyframes_per_video=0,
  )
  batch = next(ds.as_numpy_iterator())
  assert batch["keyframe"].tolist() == [10, 20]
  np.testing.assert_array_equal(batch["frame_indices"], [[8, 9, 10, 11], [18, 19, 20, 21]])
  np.testing.assert_allclose(batch["boxes"][0, 0], [3.2, 6.4, 16.0, 19.2], atol=1e-5)
  np.testing.assert_array_equal(batch["actions"][0], [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(batch["actions"][1, 0], [0, 0, 1, 0, 0])
  assert batch["box_valid"].tolist() == [[True, False], [True, False]]
  shifted = prepare.read_boxes(str(root / "boxes.csv"), offset=1.0)
  assert [t for t, _, _ in shifted["movie"]] == [0.0, 1.0, 8.0]


def test_act_pickle_frames_map_by_their_rate(tmp_path):
  """ACT ground truth: 1-based frame f at (f - 1) / fps s; boxes divided by the resolution."""
  import pickle

  tube = np.array([[1, 10, 20, 30, 40], [11, 12, 22, 32, 42]], np.float32)
  layout = {
    "labels": ["Biking", "Diving"],
    "gttubes": {"movie": {1: [tube]}},
    "nframes": {"movie": 30},
    "train_videos": [["movie"]],
    "test_videos": [[]],
    "resolution": {"movie": (100, 200)},
  }
  path = tmp_path / "gt.pkl"
  path.write_bytes(pickle.dumps(layout, protocol=2))
  boxes = prepare.read_boxes(str(path), frame_fps=10.0)
  assert [(t, lab) for t, _, lab in boxes["movie"]] == [(0.0, (1,)), (1.0, (1,))]
  np.testing.assert_allclose(
    [b for _, b, _ in boxes["movie"]], [(0.05, 0.2, 0.15, 0.4), (0.06, 0.22, 0.16, 0.42)], rtol=1e-6
  )
  rows, labels, outside = prepare.frame_annotations(boxes["movie"], fps=5.0, num_frames=6)
  assert [len(r) for r in rows] == [4, 0, 0, 0, 0, 4] and outside == 0  # 1 s at 5 fps: frame 5
  with pytest.raises(ValueError, match="--boxes-fps"):
    prepare.read_boxes(str(path))
