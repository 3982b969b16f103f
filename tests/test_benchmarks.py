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
    assert row["vs_limit"] == pytest.approx(  # stored to 3 decimals
      row["clips_per_s"] / rows["limit"]["clips_per_s"], rel=0.01, abs=5e-4
    )
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


# benchmarks/accelerator.py: run as on the GPU image, which has neither TensorFlow nor
# ml_collections (the script brings a stand-in for the part of ml_collections configs/ use).
ACCELERATOR = "from benchmarks import accelerator; "
NO_TF = "import sys; sys.modules['tensorflow'] = None; "


def _python(code: str, *args: str, timeout: int):
  import pathlib
  import subprocess
  import sys

  root = pathlib.Path(__file__).resolve().parents[1]
  return subprocess.run(
    [sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True, timeout=timeout
  )


@pytest.mark.slow  # a subprocess
def test_accelerator_benchmark_imports_no_tensorflow():
  proc = _python(NO_TF + ACCELERATOR + "accelerator.import_all(); print('imported')", timeout=300)
  assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_accelerator_benchmark_toy_run_prints_a_number_in_every_section(tmp_path):
  from benchmarks import accelerator

  out = tmp_path / "accelerator.json"
  code = NO_TF + "sys.modules['ml_collections'] = None; " + ACCELERATOR + "accelerator.main()"
  proc = _python(code, "--toy", "--json", str(out), timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  printed, result = proc.stdout, json.loads(out.read_text())
  assert result["header"]["command"] == f"python benchmarks/accelerator.py --toy --json {out}"
  assert {"jax", "jaxlib", "flax", "torch", "transformers"} <= set(result["header"]["versions"])
  assert list(result["sections"]) == list(accelerator.SECTIONS) and not result["skipped_sections"]
  for section, rows in result["sections"].items():
    assert f"## {section}: " in printed
    keys = [key for _, key, fmt in accelerator.COLUMNS[section] if fmt is not str]
    measured = [row for row in rows if all(isinstance(row.get(k), (int, float)) for k in keys[:2])]
    assert measured, f"{section}: no row measured a number: {rows}"
  sections = result["sections"]
  steps = {row["step"]: row for row in sections["steps"]}
  assert list(steps) == list(accelerator.STEPS)
  for row in steps.values():
    assert row["ms"] > 0 and row["model_gflop"] > 0 and row["mfu"] is None  # n/a on CPU
    assert row["clips_per_s"] == pytest.approx(2e3 / row["ms"])
  for row in sections["torch"]:
    mgvm = steps[row["step"]]["ms"]
    assert row["mgvm_over_torch"] == pytest.approx(row["torch_ms"] / mgvm)
  maskers = {row["masker"]: row for row in sections["maskers"]}
  assert set(accelerator.MASKERS) < set(maskers)
  for row in maskers.values():
    assert row["share"] == pytest.approx(row["masker_ms"] / row["step_ms"])
  assert maskers["tube"]["step_ms"] == steps["pretrain_v1"]["ms"]  # the same program, measured once
  pruned = [row for row in sections["compression"] if "speedup" in row]
  assert [row["model"] for row in pruned] == ["EVAD", "classifier"]
  for row in pruned:
    assert row["flops_reduction"] > 1 and row["efficiency"] == pytest.approx(
      row["speedup"] / row["flops_reduction"]
    )
  failed = [row for row in sections["attention"] if "error" in row]
  assert [row["attention"] for row in failed] == ["cudnn"]  # float32 on CPU: printed, run goes on
  assert "needs a bfloat16" in failed[0]["error"] and "needs a bfloat16" in printed
  assert [row["program"] for row in sections["cpu"]] == [
    "finetune step",
    "inference forward",
    "pretrain step",
  ]
  assert all(row["mgvm_over_torch"] > 0 for row in sections["cpu"])
