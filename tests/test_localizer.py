"""EVAD actor localizer (Sparse R-CNN): shapes, FPN strides, detached stages, matching, losses.

One tiny model is shared by the module and every jitted function is compiled once (CPU time).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from jax.flatten_util import ravel_pytree
from scipy.optimize import linear_sum_assignment

from mgvm.models import localizer as loc
from mgvm.train import detection as detection_lib

HW = (32, 32)
TINY = dict(dim=16, num_proposals=8, num_stages=2, num_heads=2, dynamic_dim=4, ffn_dim=32)
# Model-level tests: image 0 has one person box, image 1 none (padding only).
GT = np.array([[[4.0, 6.0, 20.0, 28.0]], [[0.0, 0.0, 0.0, 0.0]]], np.float32)
GT_VALID = np.array([[True], [False]])
S, B, P, G = 2, 2, 8, 3  # stages, images, proposals, padded GT boxes of the set-loss tests


@pytest.fixture(scope="module")
def model():
  # The rbg key compiles its random initialisers much faster than threefry on CPU.
  return loc.ActorLocalizer(16, **TINY, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))


def _maps(batch=2, h=2, w=2, seed=1):
  keys = jax.random.split(jax.random.key(seed), 4)
  return [jax.random.normal(k, (batch, h, w, 16)) for k in keys]


@jax.jit
@chex.assert_max_traces(n=1)
def _set_losses_and_cost(logits, boxes, gt, valid):
  terms, matches = detection_lib.set_losses(logits, boxes, gt, valid, HW)
  whwh = loc.image_whwh(HW, gt.shape[0])
  return terms, matches, detection_lib.matching_cost(logits[-1], boxes[-1], gt, whwh)


def _np_giou(a, b):
  """Independent NumPy pairwise GIoU, a [N, 4], b [M, 4] xyxy -> [N, M]."""
  a, b = a[:, None], b[None]
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  union = area_a + area_b - inter
  ew = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
  eh = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
  enclose = ew * eh
  return inter / union - (enclose - union) / enclose


def _random_boxes(rng, shape, size=32.0):
  xy = rng.uniform(0, size * 0.6, shape + (2,))
  wh = rng.uniform(size * 0.1, size * 0.4, shape + (2,))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


@pytest.fixture(scope="module")
def loss_and_grad(model):
  """(flat params, stage_w [S], ce_w) -> ((loss, outputs), flat grads, grads) for the loss
  sum_s stage_w[s] * (ce_w * loss_ce[s] + loss_bbox[s] + loss_giou[s]) on fixed maps and GT; the
  only forward/backward compile of the module (per-image sizes [B, 2] exercise that path).
  Params travel as one flat vector so that the optimiser compiles in a blink."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  flat, unravel = ravel_pytree(params)
  maps = _maps()
  image_hw = jnp.array([[32, 32], [32, 32]])

  def loss_fn(flat_p, stage_w, ce_w):
    out = nnx.merge(graphdef, unravel(flat_p), rest)(maps, image_hw)
    terms, _ = detection_lib.set_losses(out["logits"], out["boxes"], GT, GT_VALID, image_hw)
    per_stage = ce_w * terms["loss_ce"] + terms["loss_bbox"] + terms["loss_giou"]
    return (stage_w * per_stage).sum(), out

  @jax.jit
  @chex.assert_max_traces(n=1)
  def fn(flat_p, stage_w, ce_w):
    value, flat_grads = jax.value_and_grad(loss_fn, has_aux=True)(flat_p, stage_w, ce_w)
    return value, flat_grads, unravel(flat_grads)

  return flat, fn


@pytest.mark.slow  # compiles the localizer's loss and gradient
def test_output_shapes_finite_and_initial_boxes(model, loss_and_grad):
  params, fn = loss_and_grad
  (loss, out), _, _ = fn(params, jnp.ones(2), 1.0)
  assert np.isfinite(float(loss))
  assert out["logits"].shape == (2, 2, 8, 2) and out["logits"].dtype == jnp.float32
  assert out["boxes"].shape == (2, 2, 8, 4)
  assert out["features"].shape == (2, 8, 16)
  for v in out.values():
    assert np.isfinite(np.asarray(v)).all()
  # Proposals start as the whole image.
  init = loc.ops.cxcywh_to_xyxy(model.proposal_boxes[...]) * 32
  np.testing.assert_allclose(np.asarray(init), np.tile([0, 0, 32, 32], (8, 1)), atol=1e-5)
  scores = loc.person_scores(out["logits"])
  assert scores.shape == (2, 2, 8) and ((scores >= 0) & (scores <= 1)).all()
  whwh = loc.image_whwh(jnp.array([[32, 48], [16, 20]]), 2)
  np.testing.assert_array_equal(np.asarray(whwh), [[48, 32, 48, 32], [20, 16, 20, 16]])
  np.testing.assert_array_equal(np.asarray(loc.image_whwh((32, 48), 2)), [[48, 32, 48, 32]] * 2)


def test_fpn_levels_and_nearest_resizing(model):
  graphdef, state = nnx.split(model.fpn)
  p2, p3, p4, p5 = jax.jit(lambda s, m: nnx.merge(graphdef, s)(m))(state, _maps(batch=1, h=4, w=6))
  assert p2.shape == (1, 16, 24, 16) and p3.shape == (1, 8, 12, 16)
  assert p4.shape == (1, 4, 6, 16) and p5.shape == (1, 2, 3, 16)
  assert loc.fpn_strides(16) == (4, 8, 16, 32)
  x = np.random.default_rng(0).normal(size=(1, 6, 4, 3)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  for got, factor in (
    (loc._upsample_nearest(jnp.asarray(x), 2), 2.0),
    (loc._downsample_half_nearest(jnp.asarray(x)), 0.5),
  ):
    want = torch.nn.functional.interpolate(xt, scale_factor=factor, mode="nearest")
    np.testing.assert_array_equal(np.asarray(got), want.permute(0, 2, 3, 1).numpy())
  with pytest.raises(ValueError, match="even"):
    model.fpn(_maps(batch=1, h=3, w=4))


@pytest.mark.slow  # several seconds of compiling; the full suite runs it
def test_boxes_are_detached_between_stages(loss_and_grad):
  params, fn = loss_and_grad
  _, _, g1 = fn(params, jnp.array([0.0, 1.0]), 0.0)  # box loss of stage 1 only
  _, _, g0 = fn(params, jnp.array([1.0, 0.0]), 0.0)  # box loss of stage 0 only
  g0, g1 = (jax.tree.map(np.asarray, g) for g in (g0, g1))
  # Stage-1 boxes do not reach stage 0's box branch nor the proposal boxes ...
  assert np.all(g1["heads"][0]["bboxes_delta"]["kernel"][...] == 0)
  assert np.all(g1["heads"][0]["reg_module"][0][0]["kernel"][...] == 0)
  assert np.all(g1["proposal_boxes"][...] == 0)
  assert np.any(g1["heads"][1]["bboxes_delta"]["kernel"][...] != 0)
  # ... which stage-0 boxes do,
  assert np.any(g0["heads"][0]["bboxes_delta"]["kernel"][...] != 0)
  assert np.any(g0["proposal_boxes"][...] != 0)
  # while the proposal features still carry stage-1 gradient into stage 0's trunk.
  assert np.any(g1["heads"][0]["linear1"]["kernel"][...] != 0)


def test_matching_equals_scipy_on_numpy_cost():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(S, B, P, 2)).astype(np.float32)
  boxes = _random_boxes(rng, (S, B, P))
  gt = _random_boxes(rng, (B, G))
  valid = np.array([[True, True, True], [True, False, True]])
  _, matches, cost_jax = _set_losses_and_cost(logits, boxes, gt, valid)
  whwh = np.float32(32.0)
  prob = np.exp(logits[-1]) / np.exp(logits[-1]).sum(-1, keepdims=True)
  for i in range(B):
    cost = (
      5.0 * np.abs(boxes[-1, i][:, None] / whwh - gt[i][None] / whwh).sum(-1)
      - 2.0 * prob[i, :, 0][:, None]
      - 2.0 * _np_giou(boxes[-1, i], gt[i])
    )
    np.testing.assert_allclose(np.asarray(cost_jax[i]), cost, rtol=1e-5, atol=1e-5)
    cols = np.flatnonzero(valid[i])
    rows, assigned = linear_sum_assignment(cost[:, cols])
    want = np.full(G, -1)
    want[cols[assigned]] = rows
    np.testing.assert_array_equal(np.asarray(matches[i]), want)


def test_ce_weighting_matches_torch_cross_entropy():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(S, B, P, 2)).astype(np.float32) * 2
  boxes = _random_boxes(rng, (S, B, P))
  gt = _random_boxes(rng, (B, G))
  valid = np.array([[True, True, False], [True, False, False]])
  terms, matches, _ = _set_losses_and_cost(logits, boxes, gt, valid)
  target = np.ones((B, P), np.int64)
  for i, j in zip(*np.nonzero(valid)):
    target[i, int(matches[i, j])] = 0
  want = torch.nn.functional.cross_entropy(
    torch.from_numpy(logits[-1]).transpose(1, 2),
    torch.from_numpy(target),
    weight=torch.tensor([1.0, 0.1]),
  )
  assert terms["loss_ce"].shape == (S,)
  # Terms come multiplied by class_weight = 2.
  np.testing.assert_allclose(float(terms["loss_ce"][-1]) / 2.0, want.item(), rtol=1e-5)


def test_box_losses_vanish_when_matched_predictions_equal_gt():
  rng = np.random.default_rng(5)
  gt = _random_boxes(rng, (B, G))
  valid = np.array([[True, True, False], [False, True, True]])
  boxes = _random_boxes(rng, (S, B, P))
  logits = np.zeros((S, B, P, 2), np.float32)
  slots = np.array([[5, 2, 0], [0, 7, 3]])
  for i, j in zip(*np.nonzero(valid)):
    boxes[:, i, slots[i, j]] = gt[i, j]
    logits[:, i, slots[i, j], 0] = 5.0
  terms, matches, _ = _set_losses_and_cost(logits, boxes, gt, valid)
  np.testing.assert_array_equal(np.asarray(matches), [[5, 2, -1], [-1, 7, 3]])
  np.testing.assert_allclose(np.asarray(terms["loss_bbox"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(terms["loss_giou"]), 0.0, atol=1e-6)
  assert terms["loss_ce"].shape == (S,) and np.all(np.asarray(terms["loss_ce"]) > 0)


def test_adam_steps_reduce_loss_with_one_trace(loss_and_grad):
  params, fn = loss_and_grad
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def update(g, s, p):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s

  losses = []
  for _ in range(20):
    (loss, _), grads, _ = fn(params, jnp.ones(2), 1.0)
    params, opt_state = update(grads, opt_state, params)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  # The matching may switch proposals between steps, so compare the tail's mean.
  assert np.mean(losses[-3:]) < 0.6 * losses[0], losses
