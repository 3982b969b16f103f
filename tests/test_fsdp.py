"""FSDP: the ("data", "fsdp") mesh, the sharding rules, a sharded train state, the same step on
every mesh, and the per-device bytes of docs/scale.md."""

import pathlib
import re

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from configs import finetune, pretrain
from mgvm import masking, sharding, tasks
from mgvm.train import optim, steps
from mgvm.train import state as state_lib
from tests.helpers import tiny

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config():
  return tiny(pretrain.get_config("runlocal"), num_frames=4)


def _tx(config, model_fn):
  params = nnx.state(nnx.eval_shape(model_fn), nnx.Param)
  return optim.make_optimizer(
    config.optim, params, global_batch_size=16, total_steps=10, num_layers=2
  )


def test_the_mesh_has_a_data_and_an_fsdp_axis_and_names_what_does_not_fit():
  assert jax.device_count() == 8, "tests/conftest.py asks XLA for 8 CPU devices"
  mesh = sharding.make_mesh(-1, fsdp=4)
  assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": 2, "fsdp": 4}
  assert mesh.devices[0].tolist() == jax.devices()[:4]  # an fsdp group: neighbouring devices
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
  assert dict(sharding.make_mesh(1, fsdp=8).shape) == {"data": 1, "fsdp": 8}
  flat = sharding.make_mesh(-1, fsdp=1)  # fsdp 1: the 1-D mesh of before
  assert flat.axis_names == ("data",) and sharding.batch_sharding(flat).spec == P("data")
  with pytest.raises(ValueError, match=r"mesh.fsdp=3 does not divide the 8 visible devices"):
    sharding.make_mesh(-1, fsdp=3)
  with pytest.raises(ValueError, match=r"mesh.data=4 x mesh.fsdp=4 = 16 devices but only 8"):
    sharding.make_mesh(4, fsdp=4)
  with pytest.raises(ValueError, match=r"batch_size=12 is not divisible by the 8 devices of the "):
    sharding.check_batch_size(12, mesh)
  assert sharding.check_batch_size(16, mesh) == 16


def test_the_default_rule_shards_the_largest_divisible_axis_and_replicates_the_rest():
  spec = lambda shape, fsdp=8, rules=sharding.FSDP_RULES, **kw: sharding.leaf_spec(  # noqa: E731
    "encoder/blocks/0/mlp/fc1/kernel", shape, 4, fsdp, rules, **kw
  )
  assert spec((32, 128), min_bytes=0) == P(None, "fsdp")
  assert spec((128, 32), min_bytes=0) == P("fsdp")
  assert spec((30, 16), min_bytes=0) == P(None, "fsdp")  # 30 does not divide by 8
  assert spec((30, 6), min_bytes=0) == P()  # nothing divides: replicated
  assert spec((), min_bytes=0) == P()
  assert spec((32, 128), fsdp=1, min_bytes=0) == P()
  assert spec((512, 512)) == P("fsdp")  # 1 MiB: sharded at the default threshold
  assert spec((512, 511)) == P()  # just under 1 MiB: replicated
  # explicit rules come first; the first match wins
  rules = ((r"mlp/fc1/kernel$", P("fsdp", None)), (r".*", sharding.FSDP))
  assert spec((32, 128), rules=rules, min_bytes=0) == P("fsdp", None)
  rules = ((r"fc1", P()),) + rules
  assert spec((32, 128), rules=rules, min_bytes=0) == P()
  with pytest.raises(ValueError, match=r"fc1/kernel \(30, 16\) has an axis of 30"):
    spec((30, 16), rules=((r"fc1", P("fsdp")),))
  assert sharding.shard_shape((32, 128), P(None, "fsdp"), {"fsdp": 16}) == (32, 8)


def test_params_and_adam_state_are_sharded_over_fsdp_and_replicated_over_data():
  config = _config()
  model_fn = lambda: tasks.build_model(config)  # noqa: E731
  tx, _ = _tx(config, model_fn)
  mesh = sharding.make_mesh(2, fsdp=4)
  _, state, shardings = state_lib.create(model_fn, tx, mesh, seed=0, min_shard_bytes=0)
  fc1 = state["params"]["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"][...]
  assert fc1.shape == (32, 128) and fc1.sharding.spec == P(None, "fsdp")
  assert {s.data.shape for s in fc1.addressable_shards} == {(32, 32)}
  # the same block on both data rows: device i and i + 4 hold the same columns
  blocks = {s.device: s.index for s in fc1.addressable_shards}
  devices = mesh.devices
  assert all(blocks[devices[0, j]] == blocks[devices[1, j]] for j in range(4))
  adam = state["opt_state"][0][0]
  for moment in (adam.mu, adam.nu):
    leaf = moment["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"][...]
    assert leaf.sharding.spec == P(None, "fsdp")
    assert {s.data.shape for s in leaf.addressable_shards} == {(32, 32)}
  assert adam.count.sharding.spec == P() and state["rng"].sharding.spec == P()
  # small leaves too with min_shard_bytes 0: the decoder's LayerNorm scale (16,)
  assert state["params"]["decoder"]["norm"]["scale"][...].sharding.spec == P("fsdp")
  # every param and its moments share one sharding
  for p, m in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(adam.mu)):
    assert p.sharding == m.sharding
  # at the default threshold (1 MiB) nothing of this tiny model is sharded
  _, _, default, _ = state_lib.plan(model_fn, tx, mesh, seed=0)
  assert all(s.spec == P() for s in jax.tree.leaves(default))
  # fsdp 1: everything replicated, as before
  _, _, flat, _ = state_lib.plan(model_fn, tx, sharding.make_mesh(8), seed=0, min_shard_bytes=0)
  assert all(s.spec == P() for s in jax.tree.leaves(flat))


@pytest.mark.slow  # the train step compiled for five meshes
def test_every_mesh_gives_the_same_loss_and_params_as_one_device_and_compiles_once():
  config = _config()
  model_fn = lambda: tasks.build_model(config)  # noqa: E731
  tx, schedule = _tx(config, model_fn)
  masker = masking.build({"kind": "tube", "ratio": 0.5}, (2, 2, 2))
  video = np.asarray(jax.random.normal(jax.random.key(3), (16, 4, 32, 32, 3)), np.float32)
  results = {}
  # 8 x 1 (pure data parallel) is tests/test_train_state.py's
  for data, fsdp, accum in ((1, 1, 1), (1, 8, 1), (2, 4, 1), (4, 2, 2)):
    mesh = sharding.make_mesh(data, fsdp=fsdp)
    graphdef, state, shardings = state_lib.create(model_fn, tx, mesh, seed=0, min_shard_bytes=0)
    traces = []

    def counted(state, batch, step=steps.pretrain_step(graphdef, masker, tx, schedule, accum)):
      traces.append(1)
      return step(state, batch)

    step = steps.compile_step(counted, shardings, mesh)
    batch = sharding.to_global({"video": video}, mesh)
    assert batch["video"].sharding.spec == sharding.batch_sharding(mesh).spec
    losses = []
    for _ in range(3):
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
    assert len(traces) == 1 and step._cache_size() == 1, (data, fsdp)
    kernel = state["params"]["encoder"]["blocks"][1]["attn"]["qkv"]["kernel"][...]
    assert kernel.sharding.spec == (P(None, "fsdp") if fsdp > 1 else P())
    results[data, fsdp, accum] = (losses, jax.device_get(state["params"].to_pure_dict()))
  base_losses, base_params = results.pop((1, 1, 1))
  for key, (losses, params) in results.items():
    np.testing.assert_allclose(losses, base_losses, rtol=1e-5, err_msg=str(key))
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=str(key)),
      params,
      base_params,
    )


def test_bytes_per_device_match_a_hand_count():
  """A 1-block classifier of width 32 with 4 classes, counted by hand."""
  config = tiny(finetune.get_config("runlocal"))
  config.model.depth = 1
  model_fn = lambda: tasks.build_model(config, num_classes=4)  # noqa: E731
  d, hidden, classes = 32, 128, 4
  patch_embed = 2 * 16 * 16 * 3 * d + d
  block = (
    2 * d + (d * 3 * d + 2 * d) + (d * d + d) + 2 * d + (d * hidden + hidden) + (hidden * d + d)
  )
  head = 2 * d + d * classes + classes  # fc_norm, head
  n = patch_embed + block + head
  assert n == 62052
  # fsdp 1: params, AdamW's mu and nu (float32 each) and its int32 step count
  full = state_lib.memory_per_device(model_fn, 1)
  assert full == {"params": 4 * n, "opt_state": 8 * n + 4, "total": 12 * n + 4, "num_params": n}
  # every leaf but the head's (4,) bias has an axis divisible by 8 and by 16
  for fsdp in (8, 16):
    split = state_lib.memory_per_device(model_fn, fsdp, min_bytes=0)
    assert split["params"] == 4 * ((n - classes) // fsdp + classes), fsdp
    assert split["opt_state"] == 2 * split["params"] + 4
  # at the default threshold (1 MiB) this model stays whole
  assert state_lib.memory_per_device(model_fn, 8) == full


def test_docs_scale_shows_the_table_memory_table_computes_for_vit_b():
  text = (ROOT / "docs" / "scale.md").read_text()
  section = text.split("## Memory per device", 1)[1]
  for row in state_lib.memory_table(sizes=("B",)).splitlines()[2:]:
    assert row in section, row
  assert re.search(r"\| classifier \| ViT-g \| 1012\.2 M \|", section)
