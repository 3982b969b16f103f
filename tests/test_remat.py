"""Per-block rematerialisation (`remat="none" | "full" | "dots"`): same loss and gradients,
less memory held for the backward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgvm import masking, models
from mgvm.train import losses

TINY = dict(size=None, dim=24, depth=2, num_heads=2, num_frames=4, image_size=32)

# XLA:CPU expands jax.checkpoint's optimisation barriers early and then merges the recomputed
# forward back into the original by common-subexpression elimination, so on CPU with default
# options remat changes nothing. These options keep the recomputation and schedule for memory,
# as the GPU and TPU compilers do, so the CPU's memory analysis shows what remat saves.
CPU_AS_ACCELERATOR = {
  "xla_disable_hlo_passes": "cse",
  "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
}


def _trainer(loss_fn):
  """jit(value_and_grad) of a training loss with drop path / dropout from `key` (one jit for
  every model: it compiles once per remat choice)."""

  @nnx.jit
  def step(model, key):
    return nnx.value_and_grad(lambda m: loss_fn(m, nnx.Rngs(dropout=key)))(model)

  def run(model, key):
    loss, grads = step(model, key)
    return loss, nnx.state(grads, nnx.Param)

  return run


def _assert_same(result, reference):
  np.testing.assert_allclose(result[0], reference[0], rtol=1e-6)
  leaves = jax.tree_util.tree_leaves_with_path(result[1])
  for (path, a), b in zip(leaves, jax.tree_util.tree_leaves(reference[1])):
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, atol=1e-6 * scale, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # three compiles of a VideoMAE step: ~5 s on 2 idle cores
def test_mae_loss_and_gradients_do_not_depend_on_remat():
  video = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  m = masking.build({"kind": "tube", "ratio": 0.5}, (2, 2, 2))(jax.random.key(1), video, None)

  def loss_fn(model, rngs):
    pred, _ = model(video, m, deterministic=False, rngs=rngs)
    return losses.mae_loss(video, pred, m, model.tubelet)

  train = _trainer(loss_fn)

  def run(remat, key=jax.random.key(2)):
    mae = models.VideoMAE(
      **TINY, decoder_depth=1, drop_path_rate=0.5, remat=remat, rngs=nnx.Rngs(0)
    )
    return train(mae, key)

  reference = run("none")
  # Drop path is live: another key gives another loss.
  assert abs(float(run("none", jax.random.key(3))[0]) - float(reference[0])) > 1e-4
  for remat in ("full", "dots"):
    _assert_same(run(remat), reference)


@pytest.mark.slow  # several seconds of compiling; the full suite runs it
def test_classifier_loss_and_gradients_do_not_depend_on_remat():
  video = jax.random.normal(jax.random.key(4), (4, 4, 32, 32, 3))
  labels = jnp.array([0, 1, 2, 1])

  def loss_fn(model, rngs):
    logits, _ = model(video, deterministic=False, rngs=rngs)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  train = _trainer(loss_fn)

  def run(remat, key=jax.random.key(5)):
    clf = models.VideoClassifier(
      **TINY,
      num_classes=3,
      drop_path_rate=0.5,
      fc_drop_rate=0.5,
      head_init_scale=1.0,
      remat=remat,
      rngs=nnx.Rngs(0),
    )
    return train(clf, key)

  reference = run("none")
  assert abs(float(run("none", jax.random.key(6))[0]) - float(reference[0])) > 1e-3
  for remat in ("full", "dots"):
    _assert_same(run(remat), reference)


@pytest.mark.slow
def test_remat_holds_less_memory_for_the_backward_pass():
  # 8 blocks of width 96 on 8 x 64 tokens: each block keeps ~3 MB for its backward without remat.
  tokens = jnp.zeros((8, 64, 96))
  temp = {}
  for remat in ("none", "full", "dots"):
    enc = models.VideoViT(
      None, dim=96, depth=8, num_heads=3, num_frames=8, image_size=64, remat=remat, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(enc)

    def loss(params, tokens, graphdef=graphdef):
      return jnp.sum(nnx.merge(graphdef, params).encode(tokens) ** 2)

    compiled = jax.jit(jax.grad(loss)).lower(params, tokens).compile(CPU_AS_ACCELERATOR)
    temp[remat] = compiled.memory_analysis().temp_size_in_bytes
  assert temp["full"] < 0.8 * temp["none"], temp
  assert temp["dots"] < 0.85 * temp["none"], temp


def test_unknown_remat_fails_naming_the_choices():
  with pytest.raises(ValueError, match="Unknown remat 'some'; known: none, full, dots"):
    models.VideoClassifier(**TINY, num_classes=2, remat="some", rngs=nnx.Rngs(0))
