"""Accelerator benchmarks (issue #14 item 6): step times, MFU and side-by-side ratios, one run.

The GPU run (one NVIDIA H200, 16 host cores; one command, under 8 minutes):

  python benchmarks/accelerator.py --sizes B,L --json $OUT/accelerator.json

A rerun of a subset: `--sections attention,maskers --sizes L`. The CPU side by side with PyTorch:
`python benchmarks/accelerator.py --cpu-vs-torch`. The smoke test: `--toy` (every section at a
tiny size in float32; 1-1.5 minutes on 2 CPU cores, all of it compiling ~25 small programs).

Sections (`--sections`, in this order). Each row is printed as a Markdown table row when it is
measured and `--json` is rewritten after every row, so a run cut short keeps what it measured.
  steps        per size, the configs' own train steps at 16 x 224² in bf16 on synthetic uint8
               clips, built by the tasks' `build_model` / `train_step` and compiled as train.py
               does (attention "auto", remat "none"): `finetune` (configs/finetune.py: 400
               classes, mixup, drop path 0.1, layer decay), `pretrain_v1` (configs/pretrain.py:
               tube 0.9), `pretrain_v2` (VideoMAE v2: tube 0.9 + running-cell decoder mask 0.5).
               Median of `--steps` timed steps after `--warmup`, each to block_until_ready;
               clips/s; MFU = model FLOPs / step time / `--peak-tflops` (n/a on CPU), model
               FLOPs = XLA's cost analysis of the step lowered (on the CPU, not compiled) with
               attention "xla", remat "none": cuDNN attention is a custom call counted as 0, and
               remat's recomputation is no model work.
  torch        per size, the same shapes in Hugging Face transformers
               (VideoMAEForVideoClassification / VideoMAEForPreTraining from a config, random
               init, float32 weights under bf16 autocast, attn_implementation="sdpa", fused
               AdamW on CUDA): fine-tuning (cross-entropy on float clips; no mixup, drop path or
               uint8 decoding, so mgvm's step does more) and pre-training v1; mgvm / torch =
               torch time / mgvm time (> 1: mgvm faster).
  maskers      first size: each masker jitted alone on the step's batch (normalised video and
               patch embeddings given) against the whole pre-training step with it: tube 0.9,
               tube + MGTC 0.25, random 0.9 + EVEREST 0.7, MGMAE (its in-graph optical flow
               included; the flow alone on an extra row).
  compression  first size, inference forward passes vs their unpruned versions: EVAD keep 0.7 vs
               1.0 (configs/detect.py, 80 classes), the classifier with MGTC dropping 25 % vs
               none: wall-clock speed-up, FLOPs reduction (per clip, as above), and their ratio.
  attention    first size, the `--variant-kinds` steps with each `--variants` attention/remat
               pair (xla vs cudnn at remat none, remat none vs full): time vs xla/none, MFU, XLA's
               temp memory. A pair that cannot run (cudnn off GPU or in float32) prints its error
               and the run goes on; pairs that resolve to a measured program reuse it.
  cpu          (`--cpu-vs-torch`) on the CPU, a ViT-S-like model (dim 384, depth 6, 6 heads,
               16 x 112², batch 4, float32, torch threads = cores): mgvm's and transformers'
               fine-tuning step, inference forward and pre-training step, all compiled / warmed,
               then `--cpu-rounds` interleaved rounds; medians; mgvm / torch.

Batches: ViT-B 16, ViT-L 8 (`--batch B=16,L=8`). The largest activations are fine-tuning's with
attention "xla", which keeps every block's [B, heads, 1568, 1568] attention for the backward
pass: ~1.9 GB in float32 per block at B/16 (12 blocks), ~1.3 GB at L/8 (24 blocks), so ~25-60 GB
with the rest, plus 1.0 / 3.6 GB of float32 params and AdamW state: well inside 139 GB. JAX
allocates on demand here (not 75 % up front) so torch's rows fit beside it.

Time: compiling dominates (a timed step is tens of ms). Assuming XLA:GPU compiles take what
XLA:CPU took here for the same steps (ViT-B ~20 s, ViT-L ~40 s of CPU time each): start ~15 s,
steps ~230 s (6 programs), torch ~20 s, maskers ~90 s (3 steps + 5 small), compression ~60 s (4
forwards), attention ~50 s (2 steps): ~7.5 minutes. `--budget-s` (420) caps it: a row starts
only if the time spent plus the longest row of its section and size so far fits; else it prints
`skipped: time budget` and the run ends with the `--sections ... --sizes ...` to rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import types
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# JAX takes GPU memory as it needs it rather than 75 % at start-up, so torch's rows fit beside it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SECTIONS = ("steps", "torch", "maskers", "compression", "attention", "cpu")
GPU_SECTIONS = SECTIONS[:-1]
BATCH = {"S": 32, "B": 16, "L": 8, "H": 4}
NUM_CLASSES = 400  # Kinetics-400 head (classifier and torch)
DETECT_CLASSES = 80  # AVA actions
# step name -> (task, config argument)
STEPS = {
  "finetune": ("finetune", ""),
  "pretrain_v1": ("pretrain", ""),
  "pretrain_v2": ("pretrain", "masker=running_cell"),
}
# pre-training maskers -> configs/pretrain.py argument
MASKERS = {
  "tube": "",
  "mgtc": "compress=mgtc",
  "everest": "masker=random,compress=everest",
  "mgmae": "masker=mgmae",
}
VARIANTS = "xla/none,cudnn/none,auto/none,auto/full"


@dataclasses.dataclass(frozen=True)
class Shape:
  """A model size and the clips it runs on."""

  name: str  # "B", "L", "toy", "cpu"
  model: tuple  # config.model overrides, (key, value) pairs
  frames: int
  image: int
  batch: int
  dtype: str  # compute dtype


TOY_MODEL = (
  ("size", ""),
  ("dim", 64),
  ("depth", 1),
  ("num_heads", 2),
  ("decoder_dim", 32),
  ("decoder_depth", 1),
  ("decoder_heads", 1),
)
CPU_MODEL = (("size", ""), ("dim", 384), ("depth", 6), ("num_heads", 6))


def shapes_of(args) -> list[Shape]:
  if args.toy:
    return [Shape("toy", TOY_MODEL, 8, 64, 2, "float32")]
  return [Shape(s, (("size", s),), 16, 224, args.batch[s], "bfloat16") for s in args.sizes]


def cpu_shape(args) -> Shape:
  if args.toy:
    return shapes_of(args)[0]
  return Shape("cpu", CPU_MODEL, 16, 112, 4, "float32")


# ----------------------------------------------------------------------------- configs


class _ConfigDict(dict):
  """The part of `ml_collections.ConfigDict` that configs/*.py and mgvm's tasks use."""

  def __init__(self, initial=None, **kwargs):
    super().__init__()
    self.update(initial or {}, **kwargs)

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None

  def __setattr__(self, name, value):
    self[name] = value

  def __setitem__(self, name, value):
    if isinstance(value, dict) and not isinstance(value, _ConfigDict):
      value = _ConfigDict(value)
    super().__setitem__(name, value)

  def update(self, other=(), **kwargs):
    for name, value in dict(other, **kwargs).items():
      self[name] = value

  def to_dict(self):
    return {k: v.to_dict() if isinstance(v, _ConfigDict) else v for k, v in self.items()}


def ensure_ml_collections() -> None:
  """configs/*.py import ml_collections; where it is missing (the GPU image has none) a stand-in
  with the part they use takes its place in this process."""
  try:
    import ml_collections  # noqa: F401
  except ImportError:
    module = types.ModuleType("ml_collections")
    module.ConfigDict = _ConfigDict
    module.FieldReference = lambda value, field_type=None: value
    sys.modules["ml_collections"] = module


def make_config(task: str, arg: str, shape: Shape, attention="auto", remat="none"):
  """`configs/<task>.py:<arg>` with the model, clips, dtype, attention and remat of a benchmark."""
  ensure_ml_collections()
  toy = shape.name.startswith("toy")
  module = importlib.import_module(f"configs.{task}")
  # toy detectors take runlocal's small localizer and decoder
  config = module.get_config(
    ",".join(filter(None, ["runlocal" if toy and task == "detect" else "", arg]))
  )
  config.model.update(dict(shape.model))
  config.model.update(dtype=shape.dtype, attention=attention, remat=remat)
  config.num_frames, config.image_size, config.batch_size = shape.frames, shape.image, shape.batch
  if task == "detect" and toy:
    config.model.depth = 4  # EVAD prunes after blocks depth/4 x (1, 2, 3) and needs 4 FPN maps
  return config


def model_spec(shape: Shape):
  """The encoder / decoder widths of `shape` (mgvm's `resolve_size`, shared with torch)."""
  from mgvm.models.vit import resolve_size

  m = dict(shape.model)
  keys = ("dim", "depth", "num_heads", "decoder_dim", "decoder_depth", "decoder_heads")
  return resolve_size(m.get("size") or None, **{k: m[k] for k in keys if m.get(k)})


def import_all() -> None:
  """Imports every module the sections use (none imports TensorFlow; tests check)."""
  ensure_ml_collections()
  for name in (
    "jax",
    "flax.nnx",
    "optax",
    "configs.pretrain",
    "configs.finetune",
    "configs.detect",
    "mgvm.tasks.pretrain",
    "mgvm.tasks.finetune",
    "mgvm.tasks.detect",
    "mgvm.train.steps",
    "mgvm.train.optim",
    "mgvm.train.state",
    "mgvm.sharding",
    "mgvm.masking",
    "mgvm.masking.mgmae",
    "mgvm.flow",
    "mgvm.data.device_ops",
    "mgvm.evaluate.detection",
    "mgvm.models.vit",
    "torch",
    "transformers",
  ):
    importlib.import_module(name)


# ----------------------------------------------------------------------------- formatting


def num(v) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, str):
    return v
  if isinstance(v, (int, np.integer)):
    return str(v)
  a = abs(v)
  if a >= 100:
    return f"{v:.0f}"
  if a >= 10:
    return f"{v:.1f}"
  if a >= 1:
    return f"{v:.2f}"
  return f"{v:.3g}"


def pct(v) -> str:
  return "n/a" if v is None else f"{100 * v:.1f} %"


def ratio(v) -> str:
  return "n/a" if v is None else f"{v:.2f}x"


COLUMNS = {
  "steps": [
    ("size", "size", str),
    ("step", "step", str),
    ("batch", "batch", num),
    ("ms / step", "ms", num),
    ("clips/s", "clips_per_s", num),
    ("model GFLOP / step", "model_gflop", num),
    ("TFLOP/s", "tflops", num),
    ("MFU", "mfu", pct),
    ("compile s", "compile_s", num),
  ],
  "torch": [
    ("size", "size", str),
    ("step", "step", str),
    ("batch", "batch", num),
    ("torch ms / step", "torch_ms", num),
    ("torch clips/s", "torch_clips_per_s", num),
    ("mgvm ms / step", "mgvm_ms", num),
    ("mgvm / torch", "mgvm_over_torch", ratio),
  ],
  "maskers": [
    ("size", "size", str),
    ("masker", "masker", str),
    ("visible / targets", "counts", str),
    ("masker ms", "masker_ms", num),
    ("whole step ms", "step_ms", num),
    ("share of the step", "share", pct),
  ],
  "compression": [
    ("size", "size", str),
    ("model", "model", str),
    ("variant", "variant", str),
    ("tokens", "tokens", str),
    ("GFLOP / clip", "gflop_per_clip", num),
    ("ms / batch", "ms", num),
    ("speed-up", "speedup", ratio),
    ("FLOPs reduction", "flops_reduction", ratio),
    ("speed-up / FLOPs reduction", "efficiency", num),
  ],
  "attention": [
    ("size", "size", str),
    ("step", "step", str),
    ("attention", "attention", str),
    ("remat", "remat", str),
    ("ms / step", "ms", num),
    ("vs xla/none", "vs_xla_none", ratio),
    ("MFU", "mfu", pct),
    ("XLA temp GiB", "temp_gib", num),
    ("compile s", "compile_s", num),
  ],
  "cpu": [
    ("program", "program", str),
    ("mgvm ms", "mgvm_ms", num),
    ("torch ms", "torch_ms", num),
    ("mgvm / torch", "mgvm_over_torch", ratio),
  ],
}
TITLES = {
  "steps": "mgvm train steps",
  "torch": "Hugging Face transformers (PyTorch) vs mgvm",
  "maskers": "masker share of a pre-training step",
  "compression": "EVAD / MGTC: wall-clock speed-up vs FLOPs reduction (inference)",
  "attention": "attention and remat variants",
  "cpu": "CPU side by side with PyTorch (interleaved rounds, medians)",
}


class Report:
  """Rows per section: printed as Markdown table rows as they come, kept for `--json`, and the
  time budget that decides whether a row starts."""

  def __init__(self, args, command: str):
    self.args = args
    self.start = time.perf_counter()
    self.data: dict[str, Any] = {"command": command, "args": vars(args), "sections": {}}
    self.longest: dict[tuple[str, str], float] = {}
    self.skipped: dict[str, set] = {}

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def begin(self, section: str, note: str = "") -> None:
    cols = COLUMNS[section]
    print(f"\n## {section}: {TITLES[section]}" + (f" ({note})" if note else ""), flush=True)
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "---|" * len(cols), flush=True)
    self.data["sections"].setdefault(section, [])

  def predicted(self, section: str, size: str) -> float:
    """The longest row so far of this section and size; else twice the section's longest (a
    larger size comes later), else the longest of this size."""
    if (section, size) in self.longest:
      return self.longest[(section, size)]
    same = [v for (s, _), v in self.longest.items() if s == section]
    if same:
      return 2 * max(same)
    return max([v for (_, z), v in self.longest.items() if z == size], default=0.0)

  def row(self, section: str, ids: dict, fn: Callable[[], dict], budget: bool = True) -> dict:
    """Runs `fn` (-> metrics) unless the budget forbids; errors become the row's message."""
    size = str(ids.get("size", ""))
    budget, spent = self.args.budget_s if budget else 0, self.elapsed()
    need = self.predicted(section, size)
    if budget and spent + need > budget:
      row = dict(ids, skipped=f"time budget ({spent:.0f} s spent, ~{need:.0f} s needed)")
      self.skipped.setdefault(section, set()).add(size)
    else:
      t = time.perf_counter()
      try:
        row = dict(ids, **fn())
      except Exception as e:  # noqa: BLE001 - a failing variant is a result, the run goes on
        message = " ".join(str(e).split())[:300]
        row = dict(ids, error=f"{type(e).__name__}: {message}")
        gc.collect()
      took = time.perf_counter() - t
      row["seconds"] = round(took, 2)
      key = (section, size)
      self.longest[key] = max(self.longest.get(key, 0.0), took)
    self.print_row(section, row)
    self.data["sections"][section].append(row)
    self.save()
    return row

  def print_row(self, section: str, row: dict) -> None:
    cols = COLUMNS[section]
    cells = []
    for _, key, fmt in cols:
      if key in row:
        cells.append(fmt(row[key]))
      elif "error" in row or "skipped" in row:
        cells.append(row.get("error") or f"skipped: {row['skipped']}")
        break
      else:
        cells.append("n/a")
    print("| " + " | ".join(cells) + " |", flush=True)

  def save(self) -> None:
    self.data["elapsed_s"] = round(self.elapsed(), 1)
    if not self.args.json:
      return
    tmp = self.args.json + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.data, f, indent=1, default=str)
    os.replace(tmp, self.args.json)


# ----------------------------------------------------------------------------- header


def versions() -> dict[str, str]:
  from importlib import metadata

  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def header(command: str) -> dict:
  import jax

  dev = jax.devices()[0]
  try:
    commit = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit = ""
  return {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": command,
    "device": f"{dev.platform}: {getattr(dev, 'device_kind', str(dev))} x {jax.device_count()}",
    "cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
    "versions": versions(),
    "commit": commit or "unknown",
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


# ----------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], Any], warmup: int, steps: int) -> float:
  """Median wall time of `fn()` (which returns only when its work is done) in ms."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def cost_flops(lowered_or_compiled) -> float | None:
  """FLOPs by XLA's cost analysis (None where the backend gives none)."""
  try:
    cost = lowered_or_compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - e.g. lowered programs of PJRT plugins (jax's CUDA)
    return None
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def on_cpu(tree):
  """ShapeDtypeStructs of `tree` placed on the CPU: XLA's cost analysis of a lowered program
  runs there on any machine (jax's CUDA plugin has none), and FLOPs do not depend on it."""
  import jax

  where = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where), tree)


def temp_gib(compiled) -> float | None:
  try:
    return compiled.memory_analysis().temp_size_in_bytes / 2**30
  except Exception:  # noqa: BLE001 - not every backend reports it
    return None


class Bench:
  """Builds, compiles and times mgvm programs on one device; keeps train states (params and
  AdamW state are the same for every masker / attention / remat of a model) and results."""

  def __init__(self, args, device):
    from mgvm import sharding

    self.args = args
    self.device = device
    self.mesh = sharding.make_mesh(1, devices=[device])
    self.states: dict = {}
    self.results: dict = {}
    self.flops: dict = {}
    self.batches: dict = {}
    self.programs: dict = {}
    self.fallback: dict = {}  # shape -> attention used where "auto" failed (steps section)

  def batch(self, shape: Shape, labels: bool):
    """Synthetic uint8 clips (and labels), placed as the training runner places batches."""
    import jax

    from mgvm import sharding

    key = (shape, labels)
    if key not in self.batches:
      rng = np.random.default_rng(0)
      b = {
        "video": rng.integers(
          0, 256, (shape.batch, shape.frames, shape.image, shape.image, 3), np.uint8
        )
      }
      if labels:
        b["label"] = rng.integers(0, NUM_CLASSES, (shape.batch,), np.int32)
      self.batches[key] = jax.device_put(b, sharding.batch_sharding(self.mesh))
    return self.batches[key]

  def train_program(self, config, num_classes, mesh=None):
    """(jitted step as train.py compiles it, abstract state, jitted init) on `mesh` (default:
    this bench's device)."""
    from flax import nnx

    from mgvm import tasks
    from mgvm.train import optim, steps
    from mgvm.train import state as state_lib

    task = tasks.get(config.task)
    model_fn = lambda: task.build_model(config, num_classes=num_classes)
    abstract = nnx.eval_shape(model_fn)
    tx, schedule = optim.make_optimizer(
      config.optim,
      nnx.state(abstract, nnx.Param),
      global_batch_size=config.batch_size,
      total_steps=config.total_steps,
      num_layers=state_lib.num_layers(abstract),
    )
    mesh = mesh or self.mesh
    graphdef, abstract_state, shardings, init = state_lib.plan(model_fn, tx, mesh, config.seed)
    step = task.train_step(config, graphdef, abstract, tx, schedule, num_classes=num_classes)
    return steps.compile_step(step, shardings, mesh), abstract_state, init

  def attention(self, shape: Shape, attention: str | None = None) -> str:
    """`attention`, or the default: "auto" unless it failed for `shape` (then "xla")."""
    return attention or self.fallback.get(shape, "auto")

  def result(self, task: str, arg: str, shape: Shape) -> dict | None:
    """The measured step of the default attention and remat none, if any."""
    return self.results.get((shape, task, arg, self.resolved(shape, self.attention(shape)), "none"))

  def train_runner(self, task: str, arg: str, shape: Shape, attention=None, remat="none"):
    """(run one step to completion, release the state, info) of a config's train step; compiled
    programs are kept, the train state carries over from call to call."""
    import jax

    attention = self.attention(shape, attention)

    classes = NUM_CLASSES if task == "finetune" else None
    batch = self.batch(shape, labels=classes is not None)
    key = (shape, task, arg, self.resolved(shape, attention), remat)
    if key not in self.programs:
      config = make_config(task, arg, shape, attention=attention, remat=remat)
      fn, abstract_state, init = self.train_program(config, classes)
      t = time.perf_counter()
      compiled = fn.lower(abstract_state, batch).compile()
      info = {
        "compile_s": time.perf_counter() - t,
        "hlo_gflop": (cost_flops(compiled) or 0) / 1e9,
        "temp_gib": temp_gib(compiled),
      }
      self.programs[key] = (compiled, init, info)
    compiled, init, info = self.programs[key]
    info = dict(info)
    state_key = (shape, task)
    cell = {"state": self.states.pop(state_key, None)}
    if cell["state"] is None:
      cell["state"] = init()
    out = {}

    def run():
      state, metrics = compiled(cell.pop("state"), batch)  # donated; a failure drops it
      jax.block_until_ready((state, metrics))
      cell["state"] = state
      out["loss"] = metrics["loss"]

    def release():
      if "state" in cell:
        self.states[state_key] = cell["state"]
      info["loss"] = float(out["loss"]) if "loss" in out else None

    return run, release, info

  def model_flops(self, task: str, arg: str, shape: Shape) -> float | None:
    """Model FLOPs of a train step: cost analysis of it lowered (on the CPU, not compiled) with
    attention xla and remat none."""
    import jax

    from mgvm import sharding

    key = (shape, task, arg)
    if key not in self.flops:
      config = make_config(task, arg, shape, attention="xla", remat="none")
      classes = NUM_CLASSES if task == "finetune" else None
      mesh = sharding.make_mesh(1, devices=jax.devices("cpu")[:1])
      try:
        fn, abstract_state, _ = self.train_program(config, classes, mesh)
        batch = on_cpu(self.batch(shape, classes is not None))
        self.flops[key] = cost_flops(fn.lower(abstract_state, batch))
      except Exception:  # noqa: BLE001 - the step's time stands without its FLOPs
        self.flops[key] = None
    return self.flops[key]

  def resolved(self, shape: Shape, attention: str) -> str:
    """What `attention` runs as here (so pairs that are the same program are measured once)."""
    import jax
    import jax.numpy as jnp

    try:
      from mgvm.models.vit import resolve_attention

      spec = model_spec(shape)
      backend = None if self.device == jax.devices()[0] else self.device.platform
      return resolve_attention(
        attention, jnp.dtype(shape.dtype), spec.dim // spec.num_heads, backend
      )
    except Exception:  # noqa: BLE001 - an invalid pair fails when its model is built
      return attention

  def step(self, task: str, arg: str, shape: Shape, attention=None, remat="none"):
    """Times one train step (once per program it resolves to): ms, clips/s, FLOPs, MFU."""
    attention = self.attention(shape, attention)
    key = (shape, task, arg, self.resolved(shape, attention), remat)
    if key in self.results:
      return dict(self.results[key], reused=True)
    run, release, info = self.train_runner(task, arg, shape, attention, remat)
    try:
      ms = median_ms(run, self.args.warmup, self.args.steps)
    finally:
      release()
    flops = self.model_flops(task, arg, shape)
    on_cpu = self.device.platform == "cpu"
    result = {
      "batch": shape.batch,
      "ms": ms,
      "clips_per_s": shape.batch / ms * 1e3,
      "model_gflop": flops / 1e9 if flops else None,
      "tflops": flops / ms / 1e9 if flops else None,
      "mfu": None if on_cpu or not flops else flops / (ms / 1e3) / (self.args.peak_tflops * 1e12),
      **info,
    }
    self.results[key] = result
    return result

  def jitted(self, fn, *args):
    """(compiled fn, compile seconds) of `jax.jit(fn)` on `args`."""
    import jax

    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t

  def forward_runner(self, task: str, arg: str, shape: Shape, classes: int):
    """(run one inference forward pass on uint8 clips to completion, info: model GFLOP per clip,
    tokens the encoder keeps); compiled programs and params are kept."""
    import jax
    from flax import nnx

    from mgvm import tasks
    from mgvm.data.device_ops import model_video
    from mgvm.evaluate.detection import predict_fn
    from mgvm.tasks import finetune
    from mgvm.train.steps import classify

    def program(attention):
      config = make_config(task, arg, shape, attention=attention)
      model_fn = lambda: tasks.get(task).build_model(config, num_classes=classes)
      abstract = nnx.eval_shape(model_fn)
      graphdef, params = nnx.split(abstract, nnx.Param)
      n = int(np.prod(abstract.grid))
      if task == "detect":
        fn, kept = predict_fn(graphdef), abstract.num_kept_tokens
      else:
        squeeze = finetune.compressor(config, abstract.grid)

        @jax.jit
        def fn(params, video):
          model = nnx.merge(graphdef, params)
          return classify(model, model_video({"video": video}), squeeze, deterministic=True)[0]

        kept = squeeze.num_keep if squeeze else n
      init = jax.jit(lambda: nnx.state(model_fn(), nnx.Param))
      return fn, params, init, f"{kept} of {n}"

    video = self.batch(shape, labels=False)["video"]
    key = (shape, task, arg, classes)
    if key not in self.programs:
      fn, abstract_params, _, _ = program("xla")
      flops = cost_flops(fn.lower(on_cpu(abstract_params), on_cpu(video)))
      fn, abstract_params, init, tokens = program(self.attention(shape))
      t = time.perf_counter()
      compiled = fn.lower(abstract_params, video).compile()
      info = {
        "compile_s": time.perf_counter() - t,
        "gflop_per_clip": flops / 1e9 / shape.batch if flops else None,
        "tokens": tokens,
      }
      self.programs[key] = (compiled, init(), info)
    compiled, params, info = self.programs[key]
    return lambda: jax.block_until_ready(compiled(params, video)), dict(info)

  def forward(self, task: str, arg: str, shape: Shape, classes: int) -> dict:
    """ms per batch, model GFLOP per clip and tokens of an inference forward pass."""
    run, info = self.forward_runner(task, arg, shape, classes)
    return dict(info, ms=median_ms(run, self.args.warmup, self.args.steps))


# ----------------------------------------------------------------------------- sections


def section_steps(bench: Bench, report: Report, shapes) -> None:
  report.begin("steps", f"median of {bench.args.steps} after {bench.args.warmup} warm-up")
  notes = []

  def measure(task, arg, shape):
    try:
      return bench.step(task, arg, shape)
    except Exception as e:  # noqa: BLE001 - keep the run's figures: the rest of it uses these
      if bench.attention(shape) != "auto":
        raise
      bench.fallback[shape] = "xla"
      note = f"attention 'auto' failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
      notes.append(f"{shape.name}: {note}; 'xla' instead, in every later section")
      return dict(bench.step(task, arg, shape), note=note + "; 'xla' instead")

  for shape in shapes:
    for name, (task, arg) in STEPS.items():
      report.row("steps", {"size": shape.name, "step": name}, lambda: measure(task, arg, shape))
  for note in notes:
    print(f"note: {note}")


def _transformers():
  """`transformers`, importable beside PyPI's CUDA torchvision and a CPU torch
  (`mgvm.flow.raft_weights.import_torchvision`)."""
  from mgvm.flow.raft_weights import import_torchvision

  try:
    import_torchvision()
  except ImportError:  # no torchvision: nothing to work around
    pass
  import transformers

  return transformers


def hf_config(shape: Shape, num_labels: int = NUM_CLASSES):
  transformers = _transformers()

  spec = model_spec(shape)
  return transformers.VideoMAEConfig(
    image_size=shape.image,
    patch_size=16,
    num_channels=3,
    num_frames=shape.frames,
    tubelet_size=2,
    hidden_size=spec.dim,
    num_hidden_layers=spec.depth,
    num_attention_heads=spec.num_heads,
    intermediate_size=4 * spec.dim,
    decoder_hidden_size=spec.decoder_dim,
    decoder_num_hidden_layers=spec.decoder_depth,
    decoder_num_attention_heads=spec.decoder_heads,
    decoder_intermediate_size=4 * spec.decoder_dim,
    layer_norm_eps=1e-6,
    qv_bias=True,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    use_mean_pooling=True,
    norm_pix_loss=True,
    num_labels=num_labels,
    attn_implementation="sdpa",
  )


def torch_program(shape: Shape, kind: str, device: str):
  """(run one step / forward to completion, cleanup) in transformers; kind: finetune, forward,
  pretrain (tube 0.9)."""
  import torch

  transformers = _transformers()
  config = hf_config(shape)
  pretrain = kind == "pretrain"
  cls = (
    transformers.VideoMAEForPreTraining if pretrain else transformers.VideoMAEForVideoClassification
  )
  model = cls(config).to(device)
  model.train(kind != "forward")
  gen = torch.Generator().manual_seed(0)
  b = shape.batch
  video = torch.randn(b, shape.frames, 3, shape.image, shape.image, generator=gen).to(device)
  labels = torch.randint(0, NUM_CLASSES, (b,), generator=gen).to(device)
  t, hw = shape.frames // 2, (shape.image // 16) ** 2
  order = torch.rand(b, hw, generator=gen).argsort(dim=1)
  tube = torch.zeros(b, hw, dtype=torch.bool)
  tube.scatter_(1, order[:, : int(0.9 * hw)], True)  # int(0.9 * h * w) masked, the same each slice
  mask = tube[:, None, :].expand(b, t, hw).reshape(b, t * hw).to(device)
  opt = None
  if kind != "forward":
    fused = device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=fused)
  autocast = torch.autocast(
    "cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16, enabled=shape.dtype == "bfloat16"
  )

  def sync():
    if device == "cuda":
      torch.cuda.synchronize()

  def run():
    if kind == "forward":
      with torch.no_grad(), autocast:
        model(pixel_values=video).logits.float().sum().item()
      return
    with autocast:
      if pretrain:
        loss = model(pixel_values=video, bool_masked_pos=mask).loss
      else:
        loss = model(pixel_values=video, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()

  def cleanup():
    nonlocal model, opt
    model = opt = None
    gc.collect()
    if device == "cuda":
      torch.cuda.empty_cache()

  return run, cleanup


def section_torch(bench: Bench, report: Report, shapes) -> None:
  report.begin("torch", "mgvm / torch = torch time / mgvm time; > 1: mgvm faster")

  def measure(shape, kind, step_name):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    run, cleanup = torch_program(shape, kind, device)
    try:
      ms = median_ms(run, bench.args.warmup, bench.args.steps)
    finally:
      cleanup()
    task, arg = STEPS[step_name]
    mine = bench.result(task, arg, shape)
    return {
      "batch": shape.batch,
      "torch_ms": ms,
      "torch_clips_per_s": shape.batch / ms * 1e3,
      "mgvm_ms": mine["ms"] if mine else None,
      "mgvm_over_torch": ms / mine["ms"] if mine else None,
      "torch_device": device,
    }

  for shape in shapes:
    for kind, step_name in (("finetune", "finetune"), ("pretrain", "pretrain_v1")):
      report.row(
        "torch",
        {"size": shape.name, "step": step_name},
        lambda: measure(shape, kind, step_name),
      )


def section_maskers(bench: Bench, report: Report, shapes) -> None:
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mgvm import masking, tasks
  from mgvm.data.device_ops import model_video
  from mgvm.masking import mgmae

  shape = shapes[0]
  report.begin(
    "maskers", f"size {shape.name}, batch {shape.batch}; masker jitted alone vs the step"
  )
  steps, warm = 2 * bench.args.steps, bench.args.warmup  # maskers are short: more samples

  def inputs():
    video = jax.jit(model_video)(bench.batch(shape, labels=False))
    spec = model_spec(shape)
    config = make_config("pretrain", "", shape)
    grid = nnx.eval_shape(lambda: tasks.get("pretrain").build_model(config)).grid
    n = int(np.prod(grid))
    tokens = jax.random.normal(
      jax.random.key(1), (shape.batch, n, spec.dim), jnp.dtype(shape.dtype)
    )
    return video, tokens, grid

  cache = {}

  def measure(name, arg):
    if "inputs" not in cache:
      cache["inputs"] = inputs()
    video, tokens, grid = cache["inputs"]
    config = make_config("pretrain", arg, shape)
    masker = masking.build(config.masking, grid)
    key = jax.random.key(0)
    compiled, _ = bench.jitted(lambda k, v, t: masker(k, v, t), key, video, tokens)
    ms = median_ms(lambda: jax.block_until_ready(compiled(key, video, tokens)), warm, steps)
    whole = bench.step("pretrain", arg, shape)
    return {
      "config": config.masking.to_dict(),
      "counts": f"{masker.num_keep} / {masker.num_target}",
      "masker_ms": ms,
      "step_ms": whole["ms"],
      "share": ms / whole["ms"],
    }

  def flow_only():
    video, _, _ = cache["inputs"] if "inputs" in cache else inputs()
    base = mgmae.base_index(jax.random.key(0), shape.batch, shape.frames, "middle")
    compiled, _ = bench.jitted(lambda v: mgmae.pair_flows(v, base, mgmae.default_flow), video)
    ms = median_ms(lambda: jax.block_until_ready(compiled(video)), warm, steps)
    whole = bench.result("pretrain", MASKERS["mgmae"], shape)
    return {
      "counts": f"{(shape.frames - 1) * shape.batch} frame pairs",
      "masker_ms": ms,
      "step_ms": whole["ms"] if whole else None,
      "share": ms / whole["ms"] if whole else None,
    }

  for name, arg in MASKERS.items():
    report.row("maskers", {"size": shape.name, "masker": name}, lambda: measure(name, arg))
  report.row("maskers", {"size": shape.name, "masker": "mgmae: its optical flow alone"}, flow_only)


def section_compression(bench: Bench, report: Report, shapes) -> None:
  shape = shapes[0]
  report.begin("compression", f"size {shape.name}, batch {shape.batch}; each against its first row")
  pairs = (
    ("EVAD", "detect", DETECT_CLASSES, (("keep 1.0", "keep=1.0"), ("keep 0.7", "keep=0.7"))),
    (
      "classifier",
      "finetune",
      NUM_CLASSES,
      (("no compression", ""), ("MGTC drops 25 %", "compress=mgtc")),
    ),
  )
  for model, task, classes, variants in pairs:
    base = {}
    for i, (variant, arg) in enumerate(variants):

      def measure():
        r = bench.forward(task, arg, shape, classes)
        r["clips_per_s"] = shape.batch / r["ms"] * 1e3
        if i == 0:
          base.update(r)
        elif base:
          r["speedup"] = base["ms"] / r["ms"]
          if base.get("gflop_per_clip") and r.get("gflop_per_clip"):
            r["flops_reduction"] = base["gflop_per_clip"] / r["gflop_per_clip"]
            r["efficiency"] = r["speedup"] / r["flops_reduction"]
        return r

      report.row("compression", {"size": shape.name, "model": model, "variant": variant}, measure)


def section_attention(bench: Bench, report: Report, shapes) -> None:
  report.begin("attention", "time relative to attention xla / remat none of the same step")
  pairs = [tuple(v.split("/")) for v in bench.args.variants.split(",")]
  for shape in shapes[:1]:
    for name in bench.args.variant_kinds.split(","):
      task, arg = STEPS[name]
      for attention, remat in pairs:
        shown = bench.resolved(shape, attention)
        shown = attention if shown == attention else f"{attention} ({shown})"

        def measure():
          r = bench.step(task, arg, shape, attention=attention, remat=remat)
          ref = bench.results.get((shape, task, arg, "xla", "none"))
          return dict(r, vs_xla_none=ref["ms"] / r["ms"] if ref else None)

        report.row(
          "attention",
          {"size": shape.name, "step": name, "attention": shown, "remat": remat},
          measure,
        )


def section_cpu(bench: Bench, report: Report, _shapes) -> None:
  """mgvm and transformers side by side on the CPU: everything compiled and warmed first, then
  `--cpu-rounds` rounds, each running every program `--cpu-repeats` times in turn."""
  import jax

  args = report.args
  shape = cpu_shape(args)
  cores = len(os.sched_getaffinity(0))
  cpu = jax.devices("cpu")[0]
  if bench.device != cpu:
    bench = Bench(args, cpu)
  spec = model_spec(shape)
  report.begin(
    "cpu",
    f"dim {spec.dim}, depth {spec.depth}, {spec.num_heads} heads, {shape.frames} x {shape.image}², "
    f"batch {shape.batch}, {shape.dtype}, {cores} cores, torch threads {cores}, "
    f"{args.cpu_rounds} rounds x {args.cpu_repeats}",
  )
  names = ("finetune step", "inference forward", "pretrain step")

  def measure_all() -> dict[str, dict]:
    import torch

    runs: dict[tuple[str, str], Callable] = {}
    done: list[Callable] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
      with jax.default_device(cpu):
        for name, (task, arg) in zip(names[::2], (STEPS["finetune"], STEPS["pretrain_v1"])):
          run, release, _ = bench.train_runner(task, arg, shape)
          runs[(name, "mgvm")] = run
          done.append(release)
        runs[(names[1], "mgvm")] = bench.forward_runner("finetune", "", shape, NUM_CLASSES)[0]
        for name, kind in zip(names, ("finetune", "forward", "pretrain")):
          run, cleanup = torch_program(shape, kind, "cpu")
          runs[(name, "torch")] = run
          done.append(cleanup)
        for run in runs.values():
          for _ in range(args.warmup):
            run()
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for _ in range(args.cpu_rounds):
          for name in names:
            for side in ("mgvm", "torch"):
              for _ in range(args.cpu_repeats):
                t = time.perf_counter()
                runs[(name, side)]()
                times[(name, side)].append(time.perf_counter() - t)
    finally:
      for fn in done:
        fn()
      torch.set_num_threads(threads)
    out = {}
    for name in names:
      mine = 1e3 * statistics.median(times[(name, "mgvm")])
      theirs = 1e3 * statistics.median(times[(name, "torch")])
      out[name] = {
        "mgvm_ms": mine,
        "torch_ms": theirs,
        "mgvm_over_torch": theirs / mine,
        "samples": len(times[(name, "mgvm")]),
        "mgvm_ms_range": [1e3 * min(times[(name, "mgvm")]), 1e3 * max(times[(name, "mgvm")])],
        "torch_ms_range": [1e3 * min(times[(name, "torch")]), 1e3 * max(times[(name, "torch")])],
      }
    return out

  measured: dict[str, Any] = {}

  def row_of(name):  # the first row measures everything; an error is every row's
    def fn():
      if "error" in measured:
        raise measured["error"]
      if not measured and name != names[0]:
        raise RuntimeError("not measured: the section's first row was skipped")
      if not measured:
        try:
          measured.update(measure_all())
        except Exception as e:
          measured["error"] = e
          raise
      return measured[name]

    return fn

  for name in names:
    report.row("cpu", {"program": name}, row_of(name), budget=name == names[0])


RUNNERS = {
  "steps": section_steps,
  "torch": section_torch,
  "maskers": section_maskers,
  "compression": section_compression,
  "attention": section_attention,
  "cpu": section_cpu,
}


# ----------------------------------------------------------------------------- main


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="B,L", help="named sizes (S, B, L, H), comma-separated")
  p.add_argument(
    "--sections",
    default="",
    help=f"comma-separated, of {', '.join(SECTIONS)} (default: all but cpu; --cpu-vs-torch: cpu)",
  )
  p.add_argument(
    "--cpu-vs-torch", action="store_true", help="the CPU section (alone unless --sections)"
  )
  p.add_argument("--batch", default="B=16,L=8", help="clips per step per size, e.g. B=16,L=8")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--steps", type=int, default=10, help="timed steps (median)")
  p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200)")
  p.add_argument(
    "--variants", default=VARIANTS, help="attention/remat pairs of the attention section"
  )
  p.add_argument(
    "--variant-kinds",
    default="finetune",
    help=f"steps of the attention section ({', '.join(STEPS)})",
  )
  p.add_argument(
    "--budget-s", type=float, default=None, help="start no row past this (default 420; 0: none)"
  )
  p.add_argument("--cpu-rounds", type=int, default=5)
  p.add_argument("--cpu-repeats", type=int, default=2)
  p.add_argument(
    "--toy", action="store_true", help="everything at a tiny size, float32 (smoke test)"
  )
  p.add_argument(
    "--json", default="", help="write every figure here too (rewritten after each row)"
  )
  a = p.parse_args(argv)
  if a.sections:
    a.sections = a.sections.split(",")
  elif a.cpu_vs_torch:
    a.sections = ["cpu"]
  else:
    a.sections = list(SECTIONS) if a.toy else list(GPU_SECTIONS)
  if a.cpu_vs_torch and "cpu" not in a.sections:
    a.sections.append("cpu")
  bad = [s for s in a.sections if s not in SECTIONS]
  if bad:
    p.error(f"unknown sections {bad}; known: {', '.join(SECTIONS)}")
  a.sizes = [s for s in a.sizes.split(",") if s]
  batch = dict(BATCH)
  for item in filter(None, a.batch.split(",")):
    name, _, value = item.partition("=")
    batch[name] = int(value)
  a.batch = batch
  bad = [s for s in a.sizes if s not in BATCH]
  if bad:
    p.error(f"unknown sizes {bad}; known: {', '.join(BATCH)}")
  bad = [k for k in a.variant_kinds.split(",") if k not in STEPS]
  if bad:
    p.error(f"unknown --variant-kinds {bad}; known: {', '.join(STEPS)}")
  bad = [v for v in a.variants.split(",") if v.count("/") != 1]
  if bad:
    p.error(f"--variants takes attention/remat pairs (e.g. {VARIANTS}); got {bad}")
  if a.toy:
    a.sizes, a.warmup, a.steps = ["toy"], 0, 1  # one timed call: compiling is the cost
    a.cpu_rounds, a.cpu_repeats = 2, 1
  if a.budget_s is None:
    a.budget_s = 0.0 if a.toy or a.sections == ["cpu"] else 420.0
  a.sections = [s for s in SECTIONS if s in a.sections]
  return a


def main(argv=None) -> dict:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  command = " ".join(["python", "benchmarks/accelerator.py", *map(shlex.quote, argv)])
  report = Report(args, command)
  import jax

  head = header(command)
  report.data["header"] = head
  print(f"# benchmarks/accelerator.py, {head['date']}")
  print(f"command: {command}")
  print(f"device: {head['device']}; host: {head['cpu']}; commit {head['commit']}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in head["versions"].items()))
  print(f"MFU peak: {args.peak_tflops:g} TFLOP/s (dense bf16, H100 / H200)", flush=True)
  report.save()
  bench = Bench(args, jax.devices()[0])
  shapes = shapes_of(args)
  for section in args.sections:
    RUNNERS[section](bench, report, shapes)
  if report.skipped:
    redo = sorted({s for sizes in report.skipped.values() for s in sizes if s})
    print(
      f"\nskipped for the time budget: {', '.join(sorted(report.skipped))}; rerun with "
      f"--sections {','.join(s for s in args.sections if s in report.skipped)}"
      + (f" --sizes {','.join(redo)}" if redo else "")
    )
  print(f"\ntotal {report.elapsed():.0f} s", flush=True)
  report.data["skipped_sections"] = sorted(report.skipped)
  report.save()
  return report.data


if __name__ == "__main__":
  main()
