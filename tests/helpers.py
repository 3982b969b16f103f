"""The one way tests shrink a config: `tiny(config, data_dir)`.

A 2-block ViT (4 blocks for EVAD, whose pruning needs them) on 8-frame 32-px clips of the shared
tiny synthetic set, batch 8, on ONE device: on 2 CPU cores the 8 virtual devices of
`tests/conftest.py` cost more than they test, so only the tests about sharding set
`mesh.data` themselves. `data_dir` is the session's `synthetic_dir` fixture, so every test that
asks for the same set reuses the copy the first one generated.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # so `from configs import ...` works wherever pytest runs from
  sys.path.insert(0, ROOT)

# What `tiny` sets, by dotted config key (also as command-line flags: `config_flags`).
TINY = {
  "model.dim": 32,
  "model.depth": 2,
  "model.num_heads": 2,
  "model.decoder_dim": 16,
  "model.decoder_depth": 1,
  "model.decoder_heads": 2,
  "num_frames": 8,
  "image_size": 32,
  "batch_size": 8,
  "mesh.data": 1,
  "data.shuffle_buffer": 16,
  "optim.warmup_steps": 2,
  "eval.batch_size": 8,
  "eval.max_batches": 0,
  "tensorboard": False,
}
# The shared tiny synthetic set: 24 / 6 / 5 videos of 1-2 s at 8-24 fps, 32 px.
TINY_SYNTHETIC = dict(
  image_size=32,
  min_seconds=1.0,
  max_seconds=2.0,
  min_fps=8.0,
  max_fps=24.0,
  num_train=24,
  num_val=6,
  num_test=5,
)
TINY_EVAD = dict(
  localizer_dim=16,
  num_proposals=4,
  num_stages=1,
  localizer_heads=2,
  dynamic_dim=4,
  ffn_dim=32,
  decoder_dim=16,
  decoder_depth=1,
  decoder_heads=2,
  action_hidden=16,
  max_boxes=2,
)


def _fields(data_dir) -> dict:
  fields = dict(TINY)
  if data_dir is not None:
    fields["data.dir"] = str(data_dir)
    fields.update({f"data.synthetic.{k}": v for k, v in TINY_SYNTHETIC.items()})
  return fields


def tiny(config, data_dir=None, **overrides):
  """`config` shrunk to test size in place (and returned); `overrides` are set last.

  With `data_dir` the config reads the shared tiny synthetic set there; without, `config.data`
  is left alone (tests on prepared shards or tfds set it themselves).
  """
  for key, value in _fields(data_dir).items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  if config.task == "detect":
    config.model.depth = 4
    config.evad.update(TINY_EVAD)
  config.update(overrides)
  return config


def config_flags(data_dir=None) -> list[str]:
  """`tiny`'s settings as `--config.KEY=VALUE` flags for `train.py` / `eval.py`."""
  return [f"--config.{k}={v}" for k, v in _fields(data_dir).items()]


def damage_step(directory: str, step: int, item: str, how: str) -> None:
  """Damages `item` ("state" / "params") of checkpoint `step` under `directory` as issue #15
  did: "truncated" cuts its data file short, "flipped" inverts 16 bytes inside it, "missing"
  deletes the item."""
  import glob
  import shutil

  folder = os.path.join(directory, str(step), item)
  if how == "missing":
    shutil.rmtree(folder)
    return
  data = max(glob.glob(os.path.join(folder, "d", "*")), key=os.path.getsize)
  size = os.path.getsize(data)
  if how == "truncated":
    os.truncate(data, size // 2)
    return
  with open(data, "rb") as f:
    raw = bytearray(f.read())
  raw[size // 3 : size // 3 + 16] = bytes(b ^ 0xFF for b in raw[size // 3 : size // 3 + 16])
  with open(data, "wb") as f:
    f.write(bytes(raw))


def run_on_two_hosts(config, workdir: str, *, train: bool, tag: str = "") -> list[str]:
  """In two processes of one CPU device each, joined by jax.distributed as `train.py` /
  `eval.py` run on two hosts (`mesh.data` = every device): `mgvm.run.train.train(config,
  workdir)` when `train`, then `mgvm.run.evaluate.evaluate(config, workdir, tag=tag)` when
  `tag`. Returns their outputs. Evaluation needs a shard per host of the split."""
  import socket
  import subprocess
  import tempfile

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  code = (
    "import json, sys\n"
    "from ml_collections import ConfigDict\n"
    "from mgvm.run import evaluate as eval_run, train as train_run\n"
    "config = ConfigDict(json.load(open(sys.argv[1])))\n"
    "config.mesh.data = -1\n"
    "if sys.argv[3] == 'train': train_run.train(config, sys.argv[2])\n"
    "if sys.argv[4]: eval_run.evaluate(config, sys.argv[2], tag=sys.argv[4])\n"
  )
  flags = os.environ.get("XLA_FLAGS", "").replace(
    "--xla_force_host_platform_device_count=8", "--xla_force_host_platform_device_count=1"
  )
  env = dict(
    os.environ,
    PYTHONPATH=ROOT,
    XLA_FLAGS=flags,
    JAX_PLATFORMS="cpu",
    JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
    JAX_NUM_PROCESSES="2",
  )
  with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
    f.write(config.to_json())
    f.flush()
    args = [f.name, workdir, "train" if train else "", tag]
    procs = [
      subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=dict(env, JAX_PROCESS_ID=str(i)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
      for i in range(2)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs
