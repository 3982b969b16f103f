"""MetricWriter: JSONL + resume truncation, TensorBoard event files, plots, process 0 only."""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mgvm import metrics


def _read_events(path):
  """Events of a TFRecord event file, checking the record framing and CRCs."""
  from tensorboard.compat.proto import event_pb2
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

  events = []
  with open(path, "rb") as f:
    data = f.read()
  pos = 0
  while pos < len(data):
    header = data[pos : pos + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header)
    body = data[pos + 12 : pos + 12 + length]
    assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(
      body
    )
    events.append(event_pb2.Event.FromString(body))
    pos += 16 + length
  return events


def _scalars(events):
  return [
    (e.step, v.tag, v.simple_value)
    for e in events
    if e.HasField("summary")
    for v in e.summary.value
  ]


def test_jsonl_and_tensorboard(tmp_path):
  workdir = str(tmp_path / "run")
  with metrics.MetricWriter(workdir, total_steps=10, progress=False) as w:
    w.write(1, {"loss": jnp.float32(0.5), "lr": 1e-3})
    w.write(2, {"loss": 0.25})
    with pytest.raises(TypeError, match="'bad'"):
      w.write(3, {"bad": jnp.ones(3)})
  assert metrics.read_metrics(workdir) == [
    {"step": 1, "loss": 0.5, "lr": 1e-3},
    {"step": 2, "loss": 0.25},
  ]
  files = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  assert len(files) == 1
  events = _read_events(files[0])
  assert events[0].file_version == "brain.Event:2"
  assert _scalars(events) == [(1, "loss", 0.5), (1, "lr", pytest.approx(1e-3)), (2, "loss", 0.25)]


@pytest.mark.slow
def test_no_tensorflow_import(tmp_path):
  """The GPU image has no TensorFlow: these modules must write event files without it."""
  code = (
    "import sys\n"
    "import mgvm.metrics, mgvm.train.optim, mgvm.train.mixup, mgvm.train.checkpoint\n"
    f"w = mgvm.metrics.MetricWriter({str(tmp_path)!r}, progress=False)\n"
    "w.write(1, {'loss': 1.0}); w.close()\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)
  assert glob.glob(str(tmp_path / "tensorboard" / "events.*"))


def test_resume_drops_later_steps(tmp_path):
  workdir = str(tmp_path)
  with metrics.MetricWriter(workdir, progress=False) as w:
    for step in range(1, 6):
      w.write(step, {"loss": float(step)})
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 6, "lo')  # a line cut short by a crash
  with metrics.MetricWriter(workdir, progress=False, resume_step=3) as w:
    assert [r["step"] for r in metrics.read_metrics(workdir)] == [1, 2, 3]
    w.write(4, {"loss": 40.0})
  records = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
  # Two event files in name order; the second starts with a SessionLog.START at step 4, which
  # makes TensorBoard discard the first file's steps >= 4.
  files = sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.*")))
  assert len(files) == 2
  second = _read_events(files[1])
  assert second[1].session_log.status == second[1].session_log.START and second[1].step == 4
  assert _scalars(second) == [(4, "loss", 40.0)]


def test_plot_curves(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    for step in range(0, 50, 5):
      f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "lr": step * 1e-4}) + "\n")
  png = metrics.plot_curves(
    path, str(tmp_path / "plots" / "curves.png"), keys=("loss", "lr"), title="tiny run"
  )
  with open(png, "rb") as f:
    data = f.read()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
  with pytest.raises(KeyError, match="'acc'"):
    metrics.plot_curves(path, str(tmp_path / "x.png"), keys=("acc",))


def test_other_processes_write_nothing(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  workdir = tmp_path / "run"
  w = metrics.MetricWriter(str(workdir), progress=True)
  w.write(1, {"loss": 1.0})
  w.log("hello")
  w.close()
  assert not workdir.exists()
  assert "hello" not in capsys.readouterr().out


def test_log_and_progress(tmp_path, capsys):
  with metrics.MetricWriter(str(tmp_path), total_steps=4, tensorboard=False, progress=True) as w:
    w.write(2, {"loss": 1.0})
    w.log("step two done")
  assert "step two done" in capsys.readouterr().out
  with open(tmp_path / "log.txt") as f:
    assert f.read().strip().endswith("step two done")
  assert not (tmp_path / "tensorboard").exists()


def test_missing_tensorboard_warns_once(tmp_path, monkeypatch, caplog):
  def unavailable(*args, **kwargs):
    raise ImportError("no module named tensorboard")

  monkeypatch.setattr(metrics, "_EventWriter", unavailable)
  monkeypatch.setattr(metrics, "_TfWriter", unavailable)
  monkeypatch.setattr(metrics, "_WARNED_NO_TENSORBOARD", False)
  for i in range(2):
    with metrics.MetricWriter(str(tmp_path / str(i)), progress=False) as w:
      w.write(1, {"loss": 1.0})
  assert sum("No TensorBoard writer" in r.message for r in caplog.records) == 1
  assert metrics.read_metrics(str(tmp_path / "1")) == [{"step": 1, "loss": 1.0}]
