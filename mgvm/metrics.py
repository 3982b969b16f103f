"""Training metrics: `workdir/metrics.jsonl`, TensorBoard scalars, a progress bar, plots.

Only process 0 writes; on other processes every method is a no-op. TensorBoard event files
are written with the `tensorboard` package's protos and record format (no TensorFlow import);
without that package `tf.summary` is tried, and without either a warning is logged once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from typing import Any, Iterable, Mapping

import jax

from mgvm import workdir as workdir_lib

_log = logging.getLogger(__name__)
_WARNED_NO_TENSORBOARD = False


def _warn_no_tensorboard(error: Exception) -> None:
  global _WARNED_NO_TENSORBOARD
  if not _WARNED_NO_TENSORBOARD:
    _log.warning("No TensorBoard writer (%s); metrics go to metrics.jsonl only.", error)
    _WARNED_NO_TENSORBOARD = True


class _EventWriter:
  """Scalars to a TensorBoard event file via tensorboard's protos (TensorFlow not needed)."""

  def __init__(self, logdir: str, resume_step: int):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    os.makedirs(logdir, exist_ok=True)
    # TensorBoard reads the files of a directory in name order: a later file gets a later name.
    stamp = int(time.time())
    while True:
      name = f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}.mgvm"
      self.path = os.path.join(logdir, name)
      try:
        handle = open(self.path, "xb")
        break
      except FileExistsError:
        stamp += 1
    self._writer = RecordWriter(handle)
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    if resume_step > 0:
      # TensorBoard drops events of earlier files with step >= this one (no duplicated steps).
      self._write(
        event_pb2.Event(
          wall_time=time.time(),
          step=resume_step + 1,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )
    self._writer.flush()

  def _write(self, event) -> None:
    self._writer.write(event.SerializeToString())

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    value = [self._summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
    self._write(
      self._event_pb2.Event(
        wall_time=time.time(), step=step, summary=self._summary_pb2.Summary(value=value)
      )
    )
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class _TfWriter:
  """Fallback through `tf.summary` (imported only here)."""

  def __init__(self, logdir: str, resume_step: int):
    del resume_step
    import tensorflow as tf

    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default():
      for k, v in values.items():
        self._tf.summary.scalar(k, v, step=step)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def _make_tb_writer(logdir: str, resume_step: int):
  try:
    return _EventWriter(logdir, resume_step)
  except ImportError as error:
    try:
      return _TfWriter(logdir, resume_step)
    except ImportError:
      _warn_no_tensorboard(error)
      return None


def _to_float(key: str, value: Any) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    raise TypeError(
      f"Metric {key!r} must be a scalar; got {type(value).__name__} {getattr(value, 'shape', '')}."
    ) from None


def _parse_lines(lines: list[str], path: str) -> list[dict]:
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:  # a line cut short by a crash
        _log.warning("Ignoring a truncated last line in %s.", path)
        continue
      raise ValueError(f"{path}:{i + 1} is not valid JSON: {line[:80]!r}") from None
  return records


class MetricWriter:
  """Writes metrics of process 0 to `workdir/metrics.jsonl`, TensorBoard and a progress bar.

  `resume_step`: a resumed run first drops the records with step > resume_step from an
  existing metrics.jsonl (and TensorBoard hides its older events past that step).
  `progress=None` shows a tqdm bar only when stdout is a terminal.
  """

  def __init__(
    self,
    workdir: str,
    *,
    total_steps: int | None = None,
    tensorboard: bool = True,
    progress: bool | None = None,
    resume_step: int = 0,
  ):
    self.workdir = os.fspath(workdir)
    self.total_steps = total_steps
    self.active = jax.process_index() == 0
    self.path = workdir_lib.metrics_path(self.workdir)
    self._file = None
    self._tb = None
    self._bar = None
    if not self.active:
      return
    os.makedirs(self.workdir, exist_ok=True)
    self._truncate(int(resume_step))
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      self._tb = _make_tb_writer(workdir_lib.tensorboard_dir(self.workdir), int(resume_step))
    if progress is None:
      progress = sys.stdout.isatty()
    if progress:
      from tqdm.auto import tqdm

      self._bar = tqdm(total=total_steps, initial=int(resume_step), dynamic_ncols=True, unit="step")

  def _truncate(self, resume_step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      records = _parse_lines(f.read().splitlines(), self.path)
    kept = [
      r for r in records if not isinstance(r.get("step"), (int, float)) or r["step"] <= resume_step
    ]
    if len(kept) == len(records):
      return
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for record in kept:
        f.write(json.dumps(record) + "\n")
    os.replace(tmp, self.path)
    _log.info(
      "Dropped %d records after step %d from %s.", len(records) - len(kept), resume_step, self.path
    )

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """One JSON line {"step": step, **metrics} (+ TensorBoard scalars, + progress bar)."""
    if not self.active:
      return
    if self._file is None:
      raise RuntimeError(f"MetricWriter for {self.workdir} is closed.")
    step = int(step)
    values = {str(k): _to_float(str(k), v) for k, v in metrics.items()}
    if "step" in values:
      raise ValueError("'step' is reserved in metrics; pass it as the step argument.")
    self._file.write(json.dumps({"step": step, **values}) + "\n")
    self._file.flush()
    if self._tb is not None:
      self._tb.scalars(step, values)
    if self._bar is not None:
      self._bar.update(max(0, step - self._bar.n))
      shown = {k: f"{v:.4g}" for k, v in list(values.items())[:4] if math.isfinite(v)}
      self._bar.set_postfix(shown, refresh=True)
    else:
      print(format_line(step, values, self.total_steps), flush=True)

  def log(self, message: str, *, echo: bool = True) -> None:
    """Prints the message (above the progress bar; not with `echo=False`) and appends it to
    workdir/log.txt."""
    if not self.active:
      return
    if not echo:
      pass
    elif self._bar is not None:
      self._bar.write(message)
    else:
      print(message, flush=True)
    with open(os.path.join(self.workdir, "log.txt"), "a", encoding="utf-8") as f:
      f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._file is not None:
      self._file.close()
      self._file = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def format_line(step: int, values: Mapping[str, float], total_steps: int | None = None) -> str:
  """'step 25/400  loss 2.722  accuracy 0.048  lr 0.00259  steps_per_sec 1.54' (key order kept)."""
  head = f"step {step}" + (f"/{total_steps}" if total_steps else "")
  return "  ".join([head] + [f"{k} {v:.4g}" for k, v in values.items()])


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics.jsonl (or of `path/metrics.jsonl` for a workdir)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    path = workdir_lib.metrics_path(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No metrics file at {path}.")
  with open(path, encoding="utf-8") as f:
    return _parse_lines(f.read().splitlines(), path)


def plot_curves(
  metrics_path: str, png_path: str, keys: Iterable[str] = ("loss",), title: str | None = None
) -> str:
  """One panel per key (x = step) saved as a PNG with the Agg backend; returns `png_path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  records = read_metrics(metrics_path)
  keys = [keys] if isinstance(keys, str) else list(keys)
  if not keys:
    raise ValueError("plot_curves needs at least one key.")
  available = sorted({k for r in records for k in r if k != "step"})
  missing = [k for k in keys if k not in available]
  if missing:
    raise KeyError(
      f"No metric {', '.join(map(repr, missing))} in {metrics_path}; available: {available}."
    )
  fig = Figure(figsize=(6.4, 2.4 * len(keys) + 0.6))
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
  for ax, key in zip(axes, keys):
    points = sorted((r["step"], r[key]) for r in records if key in r and "step" in r)
    ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  axes[-1].set_xlabel("step")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  parent = os.path.dirname(os.path.abspath(png_path))
  os.makedirs(parent, exist_ok=True)
  fig.savefig(png_path, format="png", dpi=100)
  return png_path
