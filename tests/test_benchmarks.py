"""The input-pipeline benchmark runs end to end at a tiny size, and its loaders take the frames
they say (naive PyAV, decord2, the decode limit)."""

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


def test_decord_loader_takes_the_strided_frames(tmp_path):
  pytest.importorskip("decord", reason="decord2 not installed (requirements-test.txt)")
  path = write_video(tmp_path / "v.mp4", 40, 30)
  rng = np.random.default_rng(0)
  starts = set()
  for _ in range(10):
    wanted, images = bench.decord_frames(path, rng, 4, 3)
    starts.add(wanted[0])
    assert 0 <= wanted[0] <= 40 - 10 and wanted == [wanted[0] + 3 * i for i in range(4)]
    assert [index_of(img) for img in images] == wanted
  assert len(starts) > 3
  clip = bench.DecordClips([path], 5, 4, 3, 16)[4]
  assert clip.shape == (4, 16, 16, 3) and clip.dtype == np.float32
  assert -2.2 < clip.min() and clip.max() < 2.7  # ImageNet-normalised


def test_decode_limit_decodes_the_same_strided_frames(tmp_path):
  from mgvm.datasets import prepare

  (tmp_path / "v").mkdir()
  write_video(tmp_path / "v" / "a.mp4", 40, 30)
  (tmp_path / "list.csv").write_text("a.mp4 0\n")
  out = tmp_path / "out"
  summary = prepare.prepare(
    str(tmp_path / "list.csv"), str(out), root=str(tmp_path / "v"), log=lambda _: None
  )
  ds = bench.decode_limit_dataset(
    [str(out / summary["shards"][0])], num_frames=4, stride=3, batch_size=2
  )
  starts = set()
  for batch in ds.take(5).as_numpy_iterator():
    assert batch.shape == (2, 4, 64, 128, 3) and batch.dtype == np.uint8
    for clip in batch:
      wanted = [index_of(img) for img in clip]
      starts.add(wanted[0])
      assert 0 <= wanted[0] <= 40 - 10 and wanted == [wanted[0] + 3 * i for i in range(4)]
  assert len(starts) > 3


TINY = ["--videos", "2", "--seconds", "0.5", "--height", "32", "--width", "64", "--clips", "8"]
TINY += ["--warmup", "2", "--num-frames", "4", "--image-size", "16", "--batch-size", "4"]
TINY += ["--naive-workers", "1", "--prepare-workers", "1", "--cores", "2"]


@pytest.mark.slow
def test_benchmark_runs_and_records_what_docs_benchmarks_md_needs(tmp_path, capsys, monkeypatch):
  # decord's row takes the path of a machine without decord (its frames are checked above and
  # its DataLoader run below); the other loaders run for real.
  monkeypatch.setattr(bench, "_missing_for_decord", lambda: "decord is not installed (test)")
  argv = TINY + ["--json", str(tmp_path / "r.json")]
  result = bench.main(argv)
  assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(result))
  assert result["args"]["videos"] == 2 and result["args"]["clips"] == 8  # the command, recorded
  assert {"tensorflow", "av", "python"} <= set(result["versions"]) and "CPUs" in result["machine"]
  rows = result["loaders"]
  assert list(rows) == list(bench.LOADERS)
  assert rows["decord"] == {"skipped": "skipped: decord is not installed (test)"}
  for name in ("limit", "finetune", "pretrain", "naive"):
    row = rows[name]
    assert row["clips_per_s"] > 0 and row["per_core"] == pytest.approx(row["clips_per_s"] / 2, 0.01)
    assert row["vs_limit"] == pytest.approx(row["clips_per_s"] / rows["limit"]["clips_per_s"], 0.01)
    need = bench.NEED_PER_CORE[bench.TASK[name]]
    assert row["h200_fraction"] == pytest.approx(
      [row["per_core"] / need[1], row["per_core"] / need[0]], 0.01
    )
  assert rows["limit"]["video_shape"] == [4, 32, 64, 3] and rows["limit"]["video_dtype"] == "uint8"
  assert (
    rows["finetune"]["video_shape"] == [4, 16, 16, 3] and rows["naive"]["video_dtype"] == "float32"
  )
  assert rows["naive"]["video_bytes_per_clip"] == 4 * 16 * 16 * 3 * 4
  assert "clips_per_s" in rows["pretrain2"] or rows["pretrain2"]["skipped"].startswith("n/a")
  assert result["mgvm_over_decord"] is None and result["ratio"] == result["mgvm_over_naive"] > 0
  printed = capsys.readouterr().out
  assert "skipped: decord is not installed (test)" in printed
  assert f"mgvm finetune / naive PyAV: {result['mgvm_over_naive']:.2f}x" in printed
  for name in ("limit", "finetune", "pretrain", "naive"):
    line = next(line for line in printed.splitlines() if line.startswith(bench.LABELS[name]))
    assert (
      f"{rows[name]['clips_per_s']:.2f}" in line
      and "-".join(f"{v:.2f}" for v in rows[name]["h200_fraction"]) in line
    )


@pytest.mark.slow
def test_benchmark_runs_decord_through_a_dataloader(capsys):
  missing = bench._missing_for_decord()
  if missing:
    pytest.skip(missing)
  result = bench.main(TINY + ["--only", "decord,naive"])
  assert list(result["loaders"]) == ["decord", "naive"]
  decord = result["loaders"]["decord"]
  assert decord["clips_per_s"] > 0 and decord["vs_limit"] is None
  assert decord["video_dtype"] == "float32" and decord["video_shape"] == [4, 16, 16, 3]
  assert (
    result["mgvm_over_decord"] is None
    and "decord2 + torch DataLoader / naive PyAV" in capsys.readouterr().out
  )


def test_only_names_known_loaders():
  with pytest.raises(SystemExit):
    bench.main(["--only", "limit,dali"])
