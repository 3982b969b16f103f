"""EVAD's training objective and step (ALGORITHMS §4.4).

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

from mgvm.models.localizer import set_losses
from mgvm.train.steps import StepFn, _apply, _keys

DEFAULT_WEIGHTS = dict(class_weight=2.0, l1_weight=5.0, giou_weight=2.0, no_object_weight=0.1,
                       action_weight=12.0)


def action_losses(actions: jax.Array, matches: jax.Array, gt_actions: jax.Array,
                  gt_valid: jax.Array) -> jax.Array:
  """[L] mean sigmoid BCE per decoder layer over (matched GT boxes x classes).

  actions [L, B, P, C] logits, matches [B, G] proposal per GT box (−1: none), gt_actions
  [B, G, C] multi-hot, gt_valid [B, G]. With no valid box the terms are 0.
  """
  use = gt_valid.astype(bool) & (matches >= 0)
  picked = jnp.take_along_axis(actions, jnp.maximum(matches, 0)[None, :, :, None], axis=2)
  bce = optax.sigmoid_binary_cross_entropy(picked.astype(jnp.float32),
                                           gt_actions[None].astype(jnp.float32))
  weight = use[None, :, :, None].astype(jnp.float32)
  count = jnp.maximum(use.sum() * actions.shape[-1], 1).astype(jnp.float32)
  return (bce * weight).sum(axis=(1, 2, 3)) / count


def detection_loss(out: dict[str, jax.Array], batch: dict[str, jax.Array], image_hw,
                   weights: dict[str, float] | None = None) -> tuple[jax.Array, dict[str, Any]]:
  """(total loss, {term name: [S] or [L] weighted terms, "matches": [B, G]})."""
  w = dict(DEFAULT_WEIGHTS, **(weights or {}))
  terms, matches = set_losses(out["person_logits"], out["boxes"], batch["boxes"],
                              batch["box_valid"], image_hw, class_weight=w["class_weight"],
                              l1_weight=w["l1_weight"], giou_weight=w["giou_weight"],
                              no_object_weight=w["no_object_weight"])
  terms = dict(terms)
  terms["loss_action"] = w["action_weight"] * action_losses(
      out["actions"], matches, batch["actions"], batch["box_valid"])
  flat = jnp.concatenate([jnp.ravel(v) for v in terms.values()])
  return flat.sum() / flat.size, dict(terms, matches=matches)


def detect_step(graphdef: nnx.GraphDef, tx, schedule, *, image_hw,
                weights: dict[str, float] | None = None) -> StepFn:
  """One EVAD update on a batch of keyframe clips (`mgvm.data.detection` keys)."""

  def step(state, batch):
    _, drop_key, _ = _keys(state)

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      out, _ = model(batch["video"], deterministic=False, rngs=nnx.Rngs(dropout=drop_key))
      return detection_loss(out, batch, image_hw, weights)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    state, metrics = _apply(state, grads, loss, tx, schedule)
    for name in ("loss_ce", "loss_bbox", "loss_giou", "loss_action"):
      metrics[name] = terms[name][-1]  # last stage / last decoder layer
    return state, metrics

  return step
