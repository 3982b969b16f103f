"""EVAD's training objective and step (docs/algorithms.md §4.4).

The Sparse R-CNN / EVAD set criterion: per-stage Hungarian matching (`matching_cost`, `ops.match`)
and the `SetCriterion` terms (weighted CE with no-object weight, L1 on image-normalised xyxy,
1 - GIoU), all with static shapes (ground truth padded to G boxes with a validity mask), so
everything is jit-able.

Set losses of every localizer stage (weighted CE person/no-object, L1 and GIoU on matched
boxes), plus a sigmoid BCE over the actions of the proposals matched in the *last* stage, for
every decoder layer (weight 12 for ViT-B). The total is the sum of all weighted terms divided
by their number, as the reference's training loop computes it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mgvm import ops
from mgvm.data.device_ops import model_video
from mgvm.models.localizer import NO_OBJECT, PERSON, image_whwh, person_scores
from mgvm.train.steps import StepFn, apply_updates, step_keys

DEFAULT_WEIGHTS = dict(
  class_weight=2.0, l1_weight=5.0, giou_weight=2.0, no_object_weight=0.1, action_weight=12.0
)


def _pairwise_giou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Elementwise GIoU of [..., 4] boxes a and b."""
  flat_a, flat_b = a.reshape(-1, 4), b.reshape(-1, 4)
  giou = jax.vmap(lambda x, y: ops.generalized_box_iou(x[None], y[None])[0, 0])(flat_a, flat_b)
  return giou.reshape(a.shape[:-1])


def matching_cost(
  logits: jax.Array,
  boxes: jax.Array,
  gt_boxes: jax.Array,
  whwh: jax.Array,
  *,
  class_weight: float = 2.0,
  l1_weight: float = 5.0,
  giou_weight: float = 2.0,
) -> jax.Array:
  """Hungarian cost [B, P, G] = class_weight*(-p_person) + l1_weight*L1(xyxy / image size)
  + giou_weight*(-GIoU) (the reference `HungarianMatcher`, softmax variant)."""
  prob = person_scores(logits)
  scale = whwh[:, None, :]
  cost_l1 = jnp.abs((boxes / scale)[:, :, None, :] - (gt_boxes / scale)[:, None, :, :]).sum(-1)
  cost_giou = -jax.vmap(ops.generalized_box_iou)(boxes, gt_boxes)
  return l1_weight * cost_l1 + class_weight * (-prob)[:, :, None] + giou_weight * cost_giou


def set_losses(
  logits: jax.Array,
  boxes: jax.Array,
  gt_boxes: jax.Array,
  gt_valid: jax.Array,
  image_hw,
  *,
  class_weight: float = 2.0,
  l1_weight: float = 5.0,
  giou_weight: float = 2.0,
  no_object_weight: float = 0.1,
):
  """Sparse R-CNN / EVAD set criterion for every stage.

  logits [S, B, P, 2], boxes [S, B, P, 4] xyxy pixels, gt_boxes [B, G, 4] xyxy pixels padded to G,
  gt_valid [B, G] bool, image_hw (H, W) or [B, 2].

  Returns `(terms, matches)`: `terms` has `loss_ce`, `loss_bbox`, `loss_giou`, each [S] and already
  multiplied by its weight (class_weight, l1_weight, giou_weight, the reference `weight_dict`;
  index S-1 is the reference's un-suffixed last-stage term). EVAD's training loss is the sum of all
  weighted terms (these 3*S plus the action terms) divided by their number. `matches` [B, G] int32
  is the last stage's proposal index for each GT box (-1 for padding).

  The box terms are summed over matched pairs and divided by max(number of valid GT boxes in the
  batch, 1): under jit on a sharded global batch this is the reference's all-reduced count.
  """
  if logits.ndim != 4 or boxes.shape != logits.shape[:3] + (4,):
    raise ValueError(
      f"logits must be [S, B, P, 2] and boxes [S, B, P, 4]; got {logits.shape}, {boxes.shape}."
    )
  b, p = logits.shape[1:3]
  gt_valid = gt_valid.astype(bool)
  whwh = image_whwh(image_hw, b)
  # Padding boxes are replaced by the whole image so that no NaN/inf can reach the cost or grads.
  gt_boxes = jnp.where(
    gt_valid[..., None],
    gt_boxes.astype(jnp.float32),
    whwh[:, None, :] * jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float32),
  )
  num_boxes = jnp.maximum(gt_valid.sum().astype(jnp.float32), 1.0)
  class_w = jnp.array([1.0, no_object_weight], jnp.float32)

  def one_stage(stage_logits, stage_boxes):
    stage_logits = stage_logits.astype(jnp.float32)
    stage_boxes = stage_boxes.astype(jnp.float32)
    cost = matching_cost(
      jax.lax.stop_gradient(stage_logits),
      jax.lax.stop_gradient(stage_boxes),
      gt_boxes,
      whwh,
      class_weight=class_weight,
      l1_weight=l1_weight,
      giou_weight=giou_weight,
    )
    cost = jnp.where(gt_valid[:, None, :], cost, 0.0)
    matches = jax.vmap(ops.match)(jnp.swapaxes(cost, 1, 2), gt_valid).astype(jnp.int32)
    matched = gt_valid & (matches >= 0)  # [B, G]

    # Classification: every proposal; matched ones are `person`, the rest `no-object`.
    hit = (jax.nn.one_hot(jnp.maximum(matches, 0), p, dtype=jnp.float32) * matched[..., None]).sum(
      1
    ) > 0  # [B, P]
    target = jnp.where(hit, PERSON, NO_OBJECT)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(stage_logits, -1), target[..., None], -1)[..., 0]
    w = class_w[target]
    loss_ce = (w * nll).sum() / w.sum()

    # Boxes: matched pairs only.
    src = jnp.take_along_axis(stage_boxes, jnp.maximum(matches, 0)[..., None], axis=1)  # [B, G, 4]
    scale = whwh[:, None, :]
    l1 = jnp.abs(src / scale - gt_boxes / scale).sum(-1)
    giou = 1.0 - _pairwise_giou(src, gt_boxes)
    mask = matched.astype(jnp.float32)
    loss_bbox = (l1 * mask).sum() / num_boxes
    loss_giou = (giou * mask).sum() / num_boxes
    return (class_weight * loss_ce, l1_weight * loss_bbox, giou_weight * loss_giou), matches

  (loss_ce, loss_bbox, loss_giou), matches = jax.vmap(one_stage)(logits, boxes)
  return dict(loss_ce=loss_ce, loss_bbox=loss_bbox, loss_giou=loss_giou), matches[-1]


def action_losses(
  actions: jax.Array, matches: jax.Array, gt_actions: jax.Array, gt_valid: jax.Array
) -> jax.Array:
  """[L] mean sigmoid BCE per decoder layer over (matched GT boxes x classes).

  actions [L, B, P, C] logits, matches [B, G] proposal per GT box (−1: none), gt_actions
  [B, G, C] multi-hot, gt_valid [B, G]. With no valid box the terms are 0.
  """
  use = gt_valid.astype(bool) & (matches >= 0)
  picked = jnp.take_along_axis(actions, jnp.maximum(matches, 0)[None, :, :, None], axis=2)
  bce = optax.sigmoid_binary_cross_entropy(
    picked.astype(jnp.float32), gt_actions[None].astype(jnp.float32)
  )
  weight = use[None, :, :, None].astype(jnp.float32)
  count = jnp.maximum(use.sum() * actions.shape[-1], 1).astype(jnp.float32)
  return (bce * weight).sum(axis=(1, 2, 3)) / count


def detection_loss(
  out: dict[str, jax.Array],
  batch: dict[str, jax.Array],
  image_hw,
  weights: dict[str, float] | None = None,
) -> tuple[jax.Array, dict[str, Any]]:
  """(total loss, {term name: [S] or [L] weighted terms, "matches": [B, G]})."""
  w = dict(DEFAULT_WEIGHTS, **(weights or {}))
  terms, matches = set_losses(
    out["person_logits"],
    out["boxes"],
    batch["boxes"],
    batch["box_valid"],
    image_hw,
    class_weight=w["class_weight"],
    l1_weight=w["l1_weight"],
    giou_weight=w["giou_weight"],
    no_object_weight=w["no_object_weight"],
  )
  terms = dict(terms)
  terms["loss_action"] = w["action_weight"] * action_losses(
    out["actions"], matches, batch["actions"], batch["box_valid"]
  )
  flat = jnp.concatenate([jnp.ravel(v) for v in terms.values()])
  return flat.sum() / flat.size, dict(terms, matches=matches)


def detect_step(
  graphdef: nnx.GraphDef,
  tx,
  schedule,
  *,
  image_hw,
  weights: dict[str, float] | None = None,
  normalization: str = "imagenet",
) -> StepFn:
  """One EVAD update on a batch of keyframe clips (`mgvm.data.detection` keys).

  A batch with `image_hw` (padded clips, `data.resize="short_side"`) uses each clip's content
  size for the model and the box losses instead of `image_hw`.
  """

  def step(state, batch):
    _, drop_key, _ = step_keys(state)

    # uint8 clips: flipped and normalised here
    video = model_video(batch, normalization=normalization)
    hw = batch.get("image_hw")

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      out, _ = model(video, hw, deterministic=False, rngs=nnx.Rngs(dropout=drop_key))
      return detection_loss(out, batch, image_hw if hw is None else hw, weights)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    state, metrics = apply_updates(state, grads, loss, tx, schedule)
    for name in ("loss_ce", "loss_bbox", "loss_giou", "loss_action"):
      metrics[name] = terms[name][-1]  # last stage / last decoder layer
    return state, metrics

  return step
