"""Sharded state creation, encoder transfer for fine-tuning, and the step on 1 vs 8 devices."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import finetune, pretrain
from mgvm import masking, sharding, tasks
from mgvm.train import optim, steps
from mgvm.train import state as state_lib
from mgvm.weights import CheckpointMismatchError, encoder_from_pretrained, merge_params
from tests.helpers import tiny


def _config(task, **model):
  config = tiny(
    {"pretrain": pretrain, "finetune": finetune}[task].get_config("runlocal"), num_frames=4
  )
  config.model.update(model)
  return config


def _pretrain_state(mesh, config):
  model_fn = lambda: tasks.build_model(config)
  params = nnx.state(nnx.eval_shape(model_fn), nnx.Param)
  tx, schedule = optim.make_optimizer(
    config.optim, params, global_batch_size=8, total_steps=10, num_layers=2
  )
  graphdef, state, shardings = state_lib.create(model_fn, tx, mesh, seed=0)
  masker = masking.build({"kind": "tube", "ratio": 0.5}, (2, 2, 2))
  step = steps.compile_step(steps.pretrain_step(graphdef, masker, tx, schedule), shardings, mesh)
  return state, step


@pytest.mark.slow  # the whole train step, compiled for two meshes
def test_the_step_gives_the_same_loss_and_params_on_8_devices_as_on_1():
  assert jax.device_count() == 8, "tests/conftest.py asks XLA for 8 CPU devices"
  config = _config("pretrain")
  video = np.asarray(jax.random.normal(jax.random.key(3), (8, 4, 32, 32, 3)), np.float32)
  results = []
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    state, step = _pretrain_state(mesh, config)
    batch = sharding.to_global({"video": video, "id": np.array([b"x"] * 8)}, mesh)
    assert "id" not in batch and len(batch["video"].sharding.device_set) == n
    losses = []
    for _ in range(2):
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1  # one compile, the state donated and reused
    results.append((losses, jax.device_get(state["params"].to_pure_dict())))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    results[0][1],
    results[1][1],
  )


def test_batch_size_must_divide_over_the_devices():
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
    sharding.check_batch_size(12, sharding.make_mesh(-1))
  with pytest.raises(ValueError, match="mesh.data=9"):
    sharding.make_mesh(9)


def test_classifier_takes_the_pretrained_encoder_and_names_what_it_skips():
  mae = tasks.build_model(_config("pretrain"), seed=1)
  pretrained = nnx.state(mae, nnx.Param).to_pure_dict()
  clf_params = nnx.state(tasks.build_model(_config("finetune"), num_classes=5), nnx.Param)
  messages = []
  merged = encoder_from_pretrained(clf_params, pretrained, log=messages.append)
  np.testing.assert_array_equal(
    merged["encoder"]["blocks"][1]["mlp"]["fc1"]["kernel"],
    pretrained["encoder"]["blocks"][1]["mlp"]["fc1"]["kernel"],
  )
  assert set(merged) == {"encoder"}  # head and fc_norm stay freshly initialised
  assert "decoder" in messages[0] and "encoder.norm.scale" in messages[0] and "head" in messages[0]
  # the merged dict initialises a train state
  new = merge_params(clf_params, merged)
  np.testing.assert_array_equal(
    new["encoder"]["patch_embed"]["proj"]["kernel"][...],
    pretrained["encoder"]["patch_embed"]["proj"]["kernel"],
  )
  np.testing.assert_array_equal(new["head"]["kernel"][...], clf_params["head"]["kernel"][...])


def test_a_classifier_initialises_a_model_with_a_final_norm():
  """Classifier -> MAE/EVAD encoder: every block is taken, the final norm starts fresh."""
  clf = nnx.state(tasks.build_model(_config("finetune"), num_classes=5, seed=2), nnx.Param)
  mae_params = nnx.state(tasks.build_model(_config("pretrain")), nnx.Param)
  messages = []
  merged = encoder_from_pretrained(mae_params, clf.to_pure_dict(), log=messages.append)
  assert "norm" not in merged["encoder"]
  np.testing.assert_array_equal(
    merged["encoder"]["blocks"][0]["attn"]["qkv"]["kernel"],
    clf["encoder"]["blocks"][0]["attn"]["qkv"]["kernel"][...],
  )
  assert "encoder.norm" in messages[0] and "'head'" in messages[0]


def test_a_pretrained_encoder_of_another_width_is_rejected_naming_the_parameter():
  mae = tasks.build_model(_config("pretrain", dim=48, num_heads=3))
  clf_params = nnx.state(tasks.build_model(_config("finetune"), num_classes=5), nnx.Param)
  with pytest.raises(CheckpointMismatchError, match=r"encoder\.patch_embed\.proj\.kernel"):
    encoder_from_pretrained(
      clf_params, nnx.state(mae, nnx.Param).to_pure_dict(), log=lambda _: None
    )


def test_config_tubelet_sets_the_token_grid():
  assert tasks.build_model(_config("pretrain")).grid == (2, 2, 2)  # default 2x16x16
  clf = tasks.build_model(_config("finetune", tubelet=(2, 8, 8)), num_classes=3)
  assert clf.grid == (2, 4, 4)
