"""`python -m mgvm.datasets.inspect`: counts, histograms and the exact evaluation clips per video."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.datasets import inspect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (id, num_frames, fps, label)
VIDEOS = [("a", 100, 30.0, 0), ("b", 20, 25.0, 1), ("c", 7, 10.0, 1)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("prepared")
  jpeg = tf.io.encode_jpeg(np.zeros((8, 12, 3), np.uint8)).numpy()
  for split, videos in (("train", VIDEOS), ("val", VIDEOS[:1])):
    with tf.io.TFRecordWriter(str(root / f"{split}-00000-of-00001.tfrecord")) as writer:
      for vid, n, fps, label in videos:
        writer.write(
          fmt.encode_example(
            video_id=vid, fps=fps, jpeg_frames=[jpeg] * n, height=8, width=12, label=label
          )
        )
  (root / "dataset_info.json").write_text(json.dumps({"classes": ["walk", "run"]}))
  return root


def test_json_lists_each_videos_evaluation_clips(data_dir, capsys):
  rows = inspect.main(
    [
      str(data_dir),
      "--split",
      "train",
      "--num-frames",
      "4",
      "--target-fps",
      "10",
      "--clips",
      "2",
      "--json",
    ]
  )
  assert json.loads(capsys.readouterr().out) == rows
  assert [(r["id"], r["fps"], r["num_frames"], r["label"]) for r in rows] == [
    (v, f, n, l) for v, n, f, l in VIDEOS
  ]
  # a: stride 3, span 10, max start 90 -> starts 0 and 90.
  assert rows[0]["clips"] == [[0, 3, 6, 9], [90, 93, 96, 99]]
  # b: stride 2.5 -> offsets 0, 3, 5, 8; span 9, max start 11.
  assert rows[1]["clips"] == [[0, 3, 5, 8], [11, 14, 16, 19]]
  # c: stride 1, span 4, max start 3.
  assert rows[2]["clips"] == [[0, 1, 2, 3], [3, 4, 5, 6]]
  seg = inspect.main(
    [
      str(data_dir),
      "--split",
      "train",
      "--num-frames",
      "4",
      "--temporal",
      "segment",
      "--clips",
      "2",
      "--json",
    ]
  )
  capsys.readouterr()
  assert seg[1]["clips"] == [[0, 5, 10, 15], [2, 7, 12, 17]]  # tick 5: first / middle frames


def test_summary_counts_rates_lengths_and_labels(data_dir, capsys):
  inspect.main([str(data_dir)])
  out = capsys.readouterr().out
  assert "train: 3 videos, 127 frames" in out and "val: 1 videos, 100 frames" in out
  assert "30.000       1" in out and "25.000       1" in out
  assert "walk" in out and "run" in out and "8x12: 3" in out


@pytest.mark.slow
def test_errors_name_the_problem(data_dir, tmp_path):
  for args, message in [
    ([str(data_dir), "--split", "test"], "no split 'test'"),
    ([str(tmp_path)], "no *.tfrecord files"),
    ([str(data_dir), "--clips", "0"], "num_clips"),
  ]:
    with pytest.raises(SystemExit, match=message.replace("*", r"\*")):
      inspect.main(args)
  proc = subprocess.run(
    [sys.executable, "-m", "mgvm.datasets.inspect", str(data_dir), "--split", "tset"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert proc.returncode != 0 and "no split 'tset'" in proc.stderr and "train" in proc.stderr
