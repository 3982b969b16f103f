"""Orbax checkpointing: exact round trips, resharding, retention, SIGTERM, load_params."""

from __future__ import annotations

import os
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mgvm.train import checkpoint as ckpt
from tests.helpers import damage_step


class _Tiny(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Linear(8, 16, rngs=rngs)
    self.blocks = nnx.List([nnx.LayerNorm(16, rngs=rngs), nnx.Linear(16, 8, rngs=rngs)])
    self.mask_token = nnx.Param(jnp.arange(16.0).reshape(1, 1, 16))

  def __call__(self, x):
    return self.blocks[1](self.blocks[0](self.embed(x))) + self.mask_token[...].sum()


@pytest.fixture(autouse=True)
def _no_deletion_grace(monkeypatch):
  """No step is deleted under these reads: a failed read need not wait to tell."""
  monkeypatch.setattr(ckpt, "DELETION_GRACE_S", 0.0)


def _state():
  graphdef, params = nnx.split(_Tiny(nnx.Rngs(0)), nnx.Param)
  tx = optax.adamw(1e-2, weight_decay=0.1)
  opt_state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  state = {
    "params": params,
    "opt_state": opt_state,
    "step": jnp.int32(7),
    "rng": jax.random.key_data(jax.random.key(3)),
  }
  return graphdef, state


def _assert_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_exact_async(tmp_path):
  _, state = _state()
  with ckpt.Checkpointer(str(tmp_path / "ckpt"), save_every_steps=10, async_save=True) as c:
    assert c.latest_step() is None
    with pytest.raises(FileNotFoundError, match="ckpt"):
      c.restore(state)
    assert c.maybe_save(10, state, state["params"])
    c.wait()
    assert c.latest_step() == 10
    restored = c.restore(jax.eval_shape(lambda: state))
  _assert_equal(restored, state)
  assert isinstance(restored["params"], nnx.State)
  assert type(restored["opt_state"][0]) is type(state["opt_state"][0])  # ScaleByAdamState
  assert restored["rng"].dtype == jnp.uint32
  # A fresh Checkpointer (a resumed run) sees the step and restores the same values.
  with ckpt.Checkpointer(str(tmp_path / "ckpt"), save_every_steps=10) as c:
    assert c.latest_step() == 10
    _assert_equal(c.restore(state), state)


def test_restore_onto_mesh_sharding(tmp_path):
  _, state = _state()
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1, async_save=False) as c:
    c.maybe_save(1, state, state["params"])
    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.size == 8

    def spec(x):
      rows = x.shape[0] if x.ndim else 0
      pspec = P("data") if rows and rows % 8 == 0 else P()
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, pspec))

    abstract = jax.tree.map(spec, state)
    restored = c.restore(abstract)
  _assert_equal(restored, state)
  for want, got in zip(jax.tree.leaves(abstract), jax.tree.leaves(restored)):
    assert got.sharding.is_equivalent_to(want.sharding, got.ndim), (got.sharding, want.sharding)
  kernel = restored["params"]["embed"]["kernel"][...]
  assert kernel.sharding.spec == P("data") and len(kernel.addressable_shards) == 8


def test_keep_latest_and_schedule(tmp_path):
  _, state = _state()
  with ckpt.Checkpointer(str(tmp_path), max_to_keep=2, save_every_steps=2) as c:
    saved = [c.maybe_save(step, state, state["params"]) for step in range(1, 8)]
    assert saved == [False, True, False, True, False, True, False]
    assert c.maybe_save(7, state, state["params"], force=True)
    assert not c.maybe_save(7, state, state["params"], force=True)  # already there
    c.wait()
    assert c.all_steps() == [6, 7]
    assert c.latest_step() == 7


def test_sigterm_requests_preemption(tmp_path):
  calls = []
  original = signal.getsignal(signal.SIGTERM)
  sentinel = lambda signum, frame: calls.append(signum)  # noqa: E731
  signal.signal(signal.SIGTERM, sentinel)  # never let a missing handler kill the test run
  try:
    _, state = _state()
    c = ckpt.Checkpointer(str(tmp_path), save_every_steps=100)
    assert signal.getsignal(signal.SIGTERM) != sentinel
    assert not c.preemption_requested()
    assert not c.maybe_save(3, state, state["params"])
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.time() + 5
    while not c.preemption_requested() and time.time() < deadline:
      time.sleep(0.01)
    assert c.preemption_requested()
    assert calls == [signal.SIGTERM]  # the previous Python handler is still called
    assert c.maybe_save(4, state, state["params"])  # not due, saved because of preemption
    assert not c.maybe_save(5, state, state["params"])  # only once per preemption notice
    c.close()
    assert c.latest_step() == 4
    assert signal.getsignal(signal.SIGTERM) is sentinel
  finally:
    signal.signal(signal.SIGTERM, original)


def test_load_params(tmp_path):
  graphdef, state = _state()
  with ckpt.Checkpointer(str(tmp_path / "checkpoints"), save_every_steps=5) as c:
    c.maybe_save(5, state, state["params"])
    changed = jax.tree.map(lambda x: x + 1, state["params"])
    c.maybe_save(10, state, changed)
  # Abstract target -> the caller's own structure (nnx.State); the latest step by default.
  got = ckpt.load_params(str(tmp_path / "checkpoints"), jax.eval_shape(lambda: state["params"]))
  _assert_equal(got, changed)
  model = nnx.merge(graphdef, got)
  assert model(jnp.ones((1, 8))).shape == (1, 8)
  # No target -> a plain nested dict named by path; a workdir holding checkpoints/ works too.
  raw = ckpt.load_params(str(tmp_path), step=5)
  assert set(raw) == {"embed", "blocks", "mask_token"}
  np.testing.assert_array_equal(
    np.asarray(raw["blocks"]["1"]["kernel"]),
    np.asarray(state["params"]["blocks"][1]["kernel"][...]),
  )
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match="nowhere"):
    ckpt.load_params(str(missing))
  with pytest.raises(FileNotFoundError, match="step 3"):
    ckpt.load_params(str(tmp_path), step=3)


def test_typed_keys_rejected(tmp_path):
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1) as c:
    with pytest.raises(TypeError, match="key_data"):
      c.maybe_save(1, {"rng": jax.random.key(0)}, {})


class _Wider(_Tiny):
  def __init__(self, rngs):
    super().__init__(rngs)
    self.embed = nnx.Linear(8, 24, rngs=rngs)  # another width: embed kernel / bias differ
    self.blocks = nnx.List([nnx.LayerNorm(24, rngs=rngs), nnx.Linear(24, 8, rngs=rngs)])
    self.extra = nnx.Param(jnp.zeros(3))


def test_a_checkpoint_of_another_model_names_each_differing_parameter(tmp_path):
  from mgvm.weights import CheckpointMismatchError

  _, state = _state()
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1, async_save=False) as c:
    c.maybe_save(1, state, state["params"])
  wider = nnx.state(nnx.eval_shape(lambda: _Wider(nnx.Rngs(0))), nnx.Param)
  with pytest.raises(CheckpointMismatchError) as e:
    ckpt.load_params(str(tmp_path), wider)
  message = str(e.value)
  assert "'params' of step 1" in message and "(6 differences)" in message
  assert "embed/kernel: model (8, 24) vs checkpoint (8, 16)" in message
  assert "blocks/1/kernel: model (24, 8) vs checkpoint (16, 8)" in message
  assert "extra: in the model, not in the checkpoint" in message
  abstract = jax.eval_shape(lambda: state)
  abstract["params"] = wider  # a resume of another model: the state item is checked too
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1) as c:
    with pytest.raises(CheckpointMismatchError, match="'state' of step 1"):
      c.restore(abstract)


def test_a_damaged_checkpoint_with_non_finite_values_is_refused_naming_the_step(tmp_path):
  _, state = _state()
  damaged = jax.tree.map(lambda x: x, state)
  damaged["params"]["embed"]["bias"].value = (
    damaged["params"]["embed"]["bias"][...].at[3].set(jnp.nan)
  )
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1, async_save=False) as c:
    c.maybe_save(1, state, state["params"])
    c.maybe_save(2, damaged, damaged["params"])  # what flipped bytes decoded to in issue #15
  with pytest.raises(
    ckpt.CorruptCheckpointError, match=r"'params' of step 2 .*\(embed/bias\)"
  ) as e:
    ckpt.load_params(str(tmp_path))
  assert "Steps there: [1, 2]" in str(e.value)
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1) as c:
    with pytest.raises(ckpt.CorruptCheckpointError, match="'state' of step 2"):
      c.restore(jax.eval_shape(lambda: state))
    _assert_equal(c.restore(state, step=1), state)  # the intact step still restores


@pytest.mark.parametrize("item", ["state", "params"])
@pytest.mark.parametrize("how", ["truncated", "flipped", "missing"])
def test_a_damaged_latest_step_is_named_and_resume_falls_back_to_the_newest_intact(
  tmp_path, how, item, capfd
):
  _, state = _state()
  directory = str(tmp_path / "checkpoints")
  with ckpt.Checkpointer(directory, save_every_steps=1, async_save=False) as c:
    for step in (1, 2, 3):
      c.maybe_save(step, state, state["params"])
  damage_step(directory, 3, item, how)
  if (how, item) == ("missing", "state"):  # eval reads the weights-only item, intact here
    _assert_equal(ckpt.load_params(directory), ckpt.to_nested(state["params"]))
  else:  # eval of the latest step fails; it never returns garbage
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"step 3 in .*Steps there: \[1, 2, 3\]"):
      ckpt.load_params(directory)
  abstract = jax.eval_shape(lambda: state)
  messages = []
  with ckpt.Checkpointer(directory, save_every_steps=1) as c:
    with pytest.raises(ckpt.CorruptCheckpointError, match="step 3"):
      c.restore(abstract, step=3)  # a pinned step does not fall back
    restored, step = c.restore_newest_intact(abstract, log=messages.append)
    assert step == 2
    _assert_equal(restored, state)
    assert "resuming from step 2, the newest intact one" in messages[-1]
    assert c.set_aside(after=2, log=messages.append) == directory + ".set_aside"
    assert c.all_steps() == [1, 2]
    assert c.maybe_save(3, state, state["params"])  # the resumed run saves step 3 afresh
    c.wait()
  assert os.listdir(directory + ".set_aside") == ["3"]  # the damaged step is kept, not deleted
  _assert_equal(ckpt.load_params(directory), ckpt.to_nested(state["params"]))
  assert "Event loop is closed" not in capfd.readouterr().err


def test_resume_fails_listing_the_steps_when_none_is_intact(tmp_path):
  _, state = _state()
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1, async_save=False) as c:
    c.maybe_save(1, state, state["params"])
  damage_step(str(tmp_path), 1, "state", "missing")
  with ckpt.Checkpointer(str(tmp_path), save_every_steps=1) as c:
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"steps \[1\] are all damaged"):
      c.restore_newest_intact(jax.eval_shape(lambda: state), log=lambda _: None)


def test_eval_reads_the_new_latest_step_when_clean_up_deletes_the_one_it_reads(
  tmp_path, monkeypatch
):
  """A run with keep_checkpoints=1 saves step 2 and deletes step 1 while eval reads step 1."""
  _, state = _state()
  directory = str(tmp_path)
  with ckpt.Checkpointer(directory, save_every_steps=1, async_save=False) as c:
    c.maybe_save(1, state, state["params"])
  restore = ocp.CheckpointManager.restore
  calls = []

  def restore_while_cleaning_up(self, step, *args, **kwargs):
    calls.append(step)
    if step == 1:
      with ckpt.Checkpointer(directory, max_to_keep=1, save_every_steps=1, async_save=False) as c:
        c.maybe_save(2, state, state["params"])
      assert not os.path.exists(os.path.join(directory, "1"))
    return restore(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "restore", restore_while_cleaning_up)
  params, step = ckpt.read_params(directory)
  assert (step, calls) == (2, [1, 2])
  _assert_equal(params, ckpt.to_nested(state["params"]))
  with pytest.raises(ckpt.StepDeletedError, match="step 2 was deleted"):
    calls.clear()
    monkeypatch.setattr(
      ocp.CheckpointManager,
      "restore",
      lambda self, step, *a, **k: (
        shutil.rmtree(os.path.join(directory, "2")),
        restore(self, step, *a, **k),
      )[1],
    )
    ckpt.read_params(directory, step=2)  # a pinned step is not replaced by another
