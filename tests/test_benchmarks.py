"""The input-pipeline benchmark runs end to end at a tiny size, and its naive loader is right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import input_pipeline as bench
from tests.video_files import index_of, write_video


def test_naive_loader_takes_the_strided_frames(tmp_path):
  path = write_video(tmp_path / "v.mp4", 40, 30)
  rng = np.random.default_rng(0)
  starts = set()
  for _ in range(10):
    wanted, images = bench.naive_frames(path, rng, 4, 3)
    starts.add(wanted[0])
    assert 0 <= wanted[0] <= 40 - 10 and wanted == [wanted[0] + 3 * i for i in range(4)]
    assert [index_of(img) for img in images] == wanted
  assert len(starts) > 3
  clip = bench.naive_clip((path, 0, 4, 3, 16))
  assert clip.shape == (4, 16, 16, 3) and clip.dtype == np.float32
  assert -2.2 < clip.min() and clip.max() < 2.7  # ImageNet-normalised
  for _ in range(50):
    y, x, h, w = bench._rrc_box(rng, 48, 64)
    assert 0 <= y and y + h <= 48 and 0 <= x and x + w <= 64 and h > 0 and w > 0


@pytest.mark.slow
def test_benchmark_runs_and_records_what_docs_benchmarks_md_needs(tmp_path, capsys):
  argv = [
    "--videos",
    "2",
    "--seconds",
    "0.5",
    "--height",
    "32",
    "--width",
    "48",
    "--clips",
    "8",
    "--warmup",
    "2",
    "--num-frames",
    "4",
    "--image-size",
    "16",
    "--naive-workers",
    "1",
    "--prepare-workers",
    "1",
    "--json",
    str(tmp_path / "r.json"),
  ]
  result = bench.main(argv)
  assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(result))
  assert result["args"]["videos"] == 2 and result["args"]["clips"] == 8  # the command, recorded
  assert set(result["versions"]) == {"tensorflow", "av", "python"} and "CPUs" in result["machine"]
  printed = capsys.readouterr().out
  assert (
    f"pipeline {result['pipeline_clips_per_s']:.2f} clips/s, naive PyAV "
    f"{result['naive_clips_per_s']:.2f} clips/s (1 workers)"
  ) in printed
