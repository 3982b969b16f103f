"""Model parameters in and out: the checker, plain-dict export/import and partial merges.

Every assignment goes through `assign`, which compares the arrays with the model's parameter
tree and raises a single `CheckpointMismatchError` listing all missing parameters, unexpected
keys and shape mismatches. `export_params` / `import_params` move weights as a plain nested
dict of numpy arrays (for orbax or any JAX project); `merge_params` and
`encoder_from_pretrained` swap a partial pure dict (e.g. a pre-trained encoder) into a train
state's params.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvm.trees import flatten_dict
from mgvm.weights.layouts import Entry, make_entry
from mgvm.weights.read import to_numpy

__all__ = [
  "CheckpointMismatchError",
  "shape_differences",
  "encoder_from_pretrained",
  "export_params",
  "import_params",
  "merge_params",
]


class CheckpointMismatchError(ValueError):
  """The converted checkpoint does not fit the model's parameter tree."""


def shape_differences(
  model: Mapping[str, tuple[int, ...]], stored: Mapping[str, tuple[int, ...]], what="checkpoint"
) -> list[str]:
  """One line per parameter name whose shape differs between the model and the stored weights,
  or that only one of them has (names sorted, shape mismatches first)."""
  lines = [
    f"  {name}: model {tuple(model[name])} vs {what} {tuple(stored[name])}"
    for name in sorted(model.keys() & stored.keys())
    if tuple(model[name]) != tuple(stored[name])
  ]
  lines += [f"  {name}: in the model, not in the {what}" for name in sorted(model - stored.keys())]
  lines += [f"  {name}: in the {what}, not in the model" for name in sorted(stored - model.keys())]
  return lines


def mismatch_error(problem: str, lines: list[str], limit: int = 40) -> CheckpointMismatchError:
  """`CheckpointMismatchError`: `problem` with the count of `shape_differences` lines, then the
  first `limit` of them."""
  return CheckpointMismatchError(
    f"{problem} ({len(lines)} differences):\n"
    + "\n".join(lines[:limit])
    + ("\n  ..." if len(lines) > limit else "")
  )


def model_params(model: nnx.Module) -> dict[str, nnx.Variable]:
  return {
    ".".join(str(p) for p in path): var
    for path, var in nnx.iter_graph(model)
    if isinstance(var, nnx.Param)
  }


def assign(
  model: nnx.Module,
  entries: Mapping[str, Entry],
  *,
  allow_missing: tuple[str, ...] = (),
  what: str = "checkpoint",
) -> None:
  """Check `entries` against the model's params (one error listing every problem), then assign."""
  params = model_params(model)
  missing = [p for p in params if p not in entries and not p.startswith(allow_missing)]
  unexpected = [n for n in entries if n not in params]
  mismatched = []
  for name, entry in entries.items():
    var = params.get(name)
    if var is not None and tuple(var.get_value().shape) != tuple(entry.value.shape):
      stored = (
        ""
        if entry.source_shape == tuple(entry.value.shape)
        else f" (stored as {entry.source_shape})"
      )
      mismatched.append(
        f"{name}: model shape {tuple(var.get_value().shape)}, {what} key "
        f"'{entry.source}' shape {tuple(entry.value.shape)}{stored}"
      )
  if missing or unexpected or mismatched:
    lines = [f"the {what} does not match {type(model).__name__}:"]
    if missing:
      lines.append(f"  missing parameters ({len(missing)}; in the model, not in the {what}):")
      lines += [f"    {p} {tuple(params[p].get_value().shape)}" for p in missing]
    if unexpected:
      lines.append(f"  unexpected {what} keys ({len(unexpected)}; no model parameter):")
      lines += [
        f"    '{entries[n].source}' {entries[n].source_shape}"
        + (f" -> {n}" if n != entries[n].source else "")
        for n in unexpected
      ]
    if mismatched:
      lines.append(f"  shape mismatches ({len(mismatched)}):")
      lines += [f"    {line}" for line in mismatched]
    raise CheckpointMismatchError("\n".join(lines))
  for name, entry in entries.items():
    var = params[name]
    var.set_value(jnp.asarray(entry.value, dtype=var.get_value().dtype))


def _flatten(tree: Mapping[Any, Any]) -> dict[str, Any]:
  """Nested mapping -> `{"a.b.kernel": leaf}`; `nnx.Variable` leaves give their values."""
  return {
    name: v.get_value() if isinstance(v, nnx.Variable) else v
    for name, v in flatten_dict(tree).items()
  }


def export_params(model: nnx.Module) -> dict[str, Any]:
  """The model's parameters as a nested dict of numpy arrays, keyed by path (`"blocks" -> "0" -> ...`)."""
  out: dict[str, Any] = {}
  for path, var in model_params(model).items():
    if isinstance(var.get_value(), jax.ShapeDtypeStruct):
      raise ValueError(f"{path} is abstract (a model from nnx.eval_shape); import_params first.")
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.array(var.get_value())
  return out


def import_params(model: nnx.Module, params: Mapping[str, Any]) -> nnx.Module:
  """Assign `params` (as `export_params` gives, or flat `{"a.b.kernel": array}`) in place.

  Raises `CheckpointMismatchError` listing every missing, unexpected and mis-shaped entry;
  the model is left unchanged then. Returns the model.
  """
  entries = {
    name: make_entry(np.asarray(to_numpy(v)), name) for name, v in _flatten(params).items()
  }
  assign(model, entries, what="params dict")
  return model


def merge_params(params: nnx.State, update: Any) -> nnx.State:
  """`params` with the leaves that `update` (a possibly partial pure dict) holds swapped in."""
  pure = params.to_pure_dict()
  new = update.to_pure_dict() if isinstance(update, nnx.State) else update

  def replace(path, old):
    value = new
    for key in path:
      key = getattr(key, "key", getattr(key, "idx", key))
      if not isinstance(value, dict) or (key not in value and str(key) not in value):
        return old
      value = value[key] if key in value else value[str(key)]
    return jnp.asarray(value, old.dtype)

  merged = jax.tree_util.tree_map_with_path(replace, pure)
  params = jax.tree.map(lambda x: x, params)
  params.replace_by_pure_dict(merged)
  return params


def encoder_from_pretrained(
  params: nnx.State, pretrained: dict[str, Any], log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Every `encoder.*` leaf of the classifier, taken from a pre-trained model (a partial pure dict).

  `pretrained` is a pure dict of a `VideoMAE` (or classifier) parameter tree. Leaves the
  classifier has no use for (the decoder, the encoder's final norm when mean pooling) are
  skipped and named in the log; a shape mismatch raises `CheckpointMismatchError` naming
  every parameter that differs.
  """
  mine = params.to_pure_dict()
  theirs = _flatten(pretrained)
  flat_mine = _flatten(mine)
  wanted = [k for k in flat_mine if k.startswith("encoder.")]
  # A classifier has no final encoder norm (it pools, then fc_norm): a model that has one (MAE,
  # EVAD) keeps it freshly initialised (identity LayerNorm) when starting from a classifier.
  fresh_norm = [k for k in wanted if k.startswith("encoder.norm.") and k not in theirs]
  wanted = [k for k in wanted if k not in fresh_norm]
  missing = [k for k in wanted if k not in theirs]
  if missing:
    raise CheckpointMismatchError(
      f"the pre-trained params lack {len(missing)} encoder parameters: {missing[:8]}"
    )
  bad = [
    f"{k}: model {tuple(flat_mine[k].shape)} vs checkpoint {tuple(theirs[k].shape)}"
    for k in wanted
    if tuple(flat_mine[k].shape) != tuple(theirs[k].shape)
  ]
  if bad:
    raise CheckpointMismatchError(
      "pre-trained encoder does not fit the model:\n  " + "\n  ".join(bad)
    )
  unused = sorted(
    {k.split(".")[0] if not k.startswith("encoder.") else k for k in theirs if k not in flat_mine}
  )
  fresh = sorted(
    {k.rsplit(".", 1)[0] for k in flat_mine if not k.startswith("encoder.") or k in fresh_norm}
  )
  log(
    f"init_from: {len(wanted)} encoder parameters loaded; freshly initialised: {fresh}; "
    f"unused from the checkpoint: {unused}"
  )

  def pick(tree, prefix=""):
    out = {}
    for k, v in tree.items():
      name = f"{prefix}{k}"
      if isinstance(v, dict):
        sub = pick(v, name + ".")
        if sub:
          out[k] = sub
      elif name.startswith("encoder.") and name in theirs:
        out[k] = theirs[name]
    return out

  return pick(mine)
