"""RAFT weights: torchvision and princeton-vl checkpoints → mgvm's converted file, and back in.

  python -m mgvm.flow.raft_weights --torchvision raft_small_C_T_V2-01064c6d.pth --out raft_small.npz
  python -m mgvm.flow.raft_weights --princeton raft-small.pth --out raft_small.npz
  python -m mgvm.flow.raft_weights --check raft_small.npz [--against raft_small_C_T_V2-01064c6d.pth]
  python -m mgvm.flow.raft_weights --random raft_small --out /tmp/raft_small_random.npz

The converted file is a NumPy `.npz`: one float32 array per variable of `mgvm.flow.raft.RAFT`
under its NNX path (`feature_encoder.layer1.0.convnormrelu1.conv.kernel`, HWIO kernels;
`context_encoder....norm.mean` / `.var` for batch-norm statistics) and `__raft__`, a JSON
string {"format": 1, "variant", "source"}. It is read with `allow_pickle=False`; `.pth` files
with `torch.load(weights_only=True)` (`mgvm.weights.read`), so no pickled code ever runs.

Layouts. torchvision's `raft_small` / `raft_large` state dicts name the modules as
`mgvm.flow.raft` does (`Conv2dNormActivation` children `0` / `1` become `conv` / `norm`).
princeton-vl's checkpoints (`raft-small.pth`, `raft-things.pth`, ...; MGMAE's
`raft-small-clean.pth` is derived from `raft-small.pth`) hold the same tensors under other
names (`fnet` / `cnet`, `conv1` + `norm1`, `update_block.encoder.convc1`,
`update_block.gru.convz`, `update_block.mask.0`) with the `module.` prefix of DataParallel;
a strided block's projection norm is stored twice (`norm3` / `norm4` and `downsample.1`).
The two RAFT-small architectures compute the same function (torchvision's `C_T_V1` weights
are princeton-vl's, ported); they differ in names only, and in the input scaling of
princeton-vl's `forward` (`2 · image / 255 − 1`, which MGMAE's copy removed): mgvm's RAFT
takes [−1, 1] as torchvision's does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mgvm.flow import raft
from mgvm.weights.params import CheckpointMismatchError
from mgvm.weights.read import read_state_dict

__all__ = [
  "CheckpointMismatchError",
  "convert",
  "from_princeton",
  "from_torchvision",
  "load",
  "load_params",
  "params_of",
  "princeton_to_torchvision",
  "read_meta",
  "save",
]

FORMAT = 1
META_KEY = "__raft__"
_STAGE = re.compile(r"^layer[123]$")


# ----------------------------------------------------------------------------- torchvision


def _flax_name(key: str, ndim: int) -> str | None:
  """torchvision key → the NNX variable path; None for `num_batches_tracked`."""
  *path, leaf = key.split(".")
  out = []
  for i, part in enumerate(path):
    if part.isdigit() and not (i and _STAGE.match(path[i - 1])):
      part = {"0": "conv", "1": "norm"}.get(part, part)  # Conv2dNormActivation children
    out.append(part)
  leaf = {
    "weight": "kernel" if ndim == 4 else "scale",
    "running_mean": "mean",
    "running_var": "var",
  }.get(leaf, leaf)
  return None if leaf == "num_batches_tracked" else ".".join([*out, leaf])


def variant_of(state: Mapping[str, np.ndarray]) -> str:
  """ "raft_small" or "raft_large" from a torchvision-named state dict (its feature width)."""
  key = "feature_encoder.conv.weight"
  if key not in state:
    raise ValueError(
      f"not a torchvision RAFT state dict: no {key!r}; first keys: {sorted(state)[:6]}"
    )
  width = int(np.shape(state[key])[0])
  for name, spec in raft.SPECS.items():
    if spec.feature_layers[-1] == width:
      return name
  raise ValueError(f"{key} has {width} output channels: neither RAFT-small (128) nor large (256)")


def from_torchvision(state: Mapping[str, np.ndarray]) -> tuple[str, dict[str, tuple]]:
  """(variant, {NNX path: (array, source key, source shape)}) of a torchvision RAFT state dict
  (OIHW kernels → HWIO)."""
  out = {}
  for key, value in state.items():
    value = np.asarray(value, np.float32)
    name = _flax_name(key, value.ndim)
    if name is not None:
      kernel = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
      out[name] = (kernel, key, value.shape)
  return variant_of(state), out


# ----------------------------------------------------------------------------- princeton-vl

_UPDATE = {  # princeton-vl update_block.* module → torchvision's
  "encoder.convc1": "update_block.motion_encoder.convcorr1.0",
  "encoder.convc2": "update_block.motion_encoder.convcorr2.0",
  "encoder.convf1": "update_block.motion_encoder.convflow1.0",
  "encoder.convf2": "update_block.motion_encoder.convflow2.0",
  "encoder.conv": "update_block.motion_encoder.conv.0",
  "flow_head.conv1": "update_block.flow_head.conv1",
  "flow_head.conv2": "update_block.flow_head.conv2",
  "mask.0": "mask_predictor.convrelu.0",
  "mask.2": "mask_predictor.conv",
}
for _gate in "zrq":  # ConvGRU (small) and SepConvGRU's horizontal / vertical halves (large)
  _UPDATE[f"gru.conv{_gate}"] = f"update_block.recurrent_block.convgru1.conv{_gate}"
  _UPDATE[f"gru.conv{_gate}1"] = f"update_block.recurrent_block.convgru1.conv{_gate}"
  _UPDATE[f"gru.conv{_gate}2"] = f"update_block.recurrent_block.convgru2.conv{_gate}"


def _princeton_renamed(state: Mapping[str, np.ndarray]) -> dict[str, tuple]:
  """{torchvision key: (array, princeton key)}; a ValueError names every key without a place."""
  blocks_with_conv3 = {k.rsplit(".conv3.", 1)[0] for k in state if ".conv3." in k}
  out, unknown = {}, []
  for key, value in state.items():
    head, _, rest = key.partition(".")
    new = None
    if head in ("fnet", "cnet"):
      encoder = {"fnet": "feature_encoder", "cnet": "context_encoder"}[head]
      m = re.match(r"^(layer[123]\.\d+)\.(conv|norm)(\d)\.(.+)$", rest)
      d = re.match(r"^(layer[123]\.\d+)\.downsample\.([01])\.(.+)$", rest)
      if m:
        block, kind, index, leaf = m.groups()
        projection = 4 if f"{head}.{block}" in blocks_with_conv3 else 3
        if kind == "norm" and int(index) == projection:  # the twin of downsample.1
          twin = f"{head}.{block}.downsample.1.{leaf}"
          if twin not in state or not np.array_equal(np.asarray(state[twin]), np.asarray(value)):
            unknown.append(f"{key} (no equal {twin})")
          continue
        new = f"{encoder}.{block}.convnormrelu{index}.{'0' if kind == 'conv' else '1'}.{leaf}"
      elif d:
        new = f"{encoder}.{d.group(1)}.downsample.{d.group(2)}.{d.group(3)}"
      elif rest.startswith(("conv1.", "norm1.")):
        new = f"{encoder}.convnormrelu.{'0' if rest[0] == 'c' else '1'}.{rest.split('.', 1)[1]}"
      elif rest.startswith("conv2."):
        new = f"{encoder}.conv.{rest.split('.', 1)[1]}"
    elif head == "update_block":
      module, _, leaf = rest.rpartition(".")
      if module in _UPDATE:
        new = f"{_UPDATE[module]}.{leaf}"
    if new is None:
      unknown.append(key)
    else:
      out[new] = (value, key)
  if unknown:
    raise ValueError(
      f"{len(unknown)} key(s) of the princeton-vl checkpoint have no place in RAFT:\n  "
      + "\n  ".join(unknown)
    )
  return out


def princeton_to_torchvision(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """princeton-vl RAFT names → torchvision's (the `module.` prefix already stripped).

  The duplicate of each strided block's projection norm (`norm3` of a residual block,
  `norm4` of a bottleneck one) is checked equal to `downsample.1` and dropped. Raises a
  ValueError naming every key it cannot place.
  """
  return {k: v for k, (v, _) in _princeton_renamed(state).items()}


def from_princeton(state: Mapping[str, np.ndarray]) -> tuple[str, dict[str, tuple]]:
  """(variant, {NNX path: (array, princeton key, its shape)}) of a princeton-vl state dict."""
  renamed = _princeton_renamed(state)
  variant, params = from_torchvision({k: v for k, (v, _) in renamed.items()})
  return variant, {name: (v, renamed[src][1], shape) for name, (v, src, shape) in params.items()}


def detect_layout(state: Mapping[str, np.ndarray]) -> str:
  """ "torchvision" or "princeton" from the keys."""
  if any(k.startswith("feature_encoder.") for k in state):
    return "torchvision"
  if any(k.startswith("fnet.") for k in state):
    return "princeton"
  raise ValueError(
    "not a RAFT checkpoint: expected torchvision's keys (feature_encoder.…) or princeton-vl's "
    f"(fnet.…, possibly under module.); first keys: {sorted(state)[:6]}"
  )


# ----------------------------------------------------------------------------- the model side


def params_of(model: raft.RAFT) -> dict[str, np.ndarray]:
  """{NNX path: numpy array} of every parameter and batch statistic of `model`."""
  return {name: np.asarray(var.get_value()) for name, var in raft.variables(model).items()}


def assign(model: raft.RAFT, params: Mapping[str, tuple], what: str) -> raft.RAFT:
  """Set `params` ({path: (array, source key, source shape)}) into `model` after checking them
  all: one `CheckpointMismatchError` names every missing, unexpected and mis-shaped tensor."""
  variables = raft.variables(model)
  lines = [
    f"  missing: {name} {tuple(var.get_value().shape)}"
    for name, var in variables.items()
    if name not in params
  ]
  for name, (value, source, shape) in params.items():
    var = variables.get(name)
    if var is None:
      lines.append(f"  unexpected: '{source}' {tuple(shape)} (no variable {name})")
    elif tuple(var.get_value().shape) != tuple(value.shape):
      lines.append(
        f"  shape: {name} is {tuple(var.get_value().shape)} in the model, "
        f"'{source}' {tuple(shape)} gives {tuple(value.shape)}"
      )
  if lines:
    raise CheckpointMismatchError(
      f"{what} does not match RAFT ({len(lines)} mismatched tensors):\n" + "\n".join(lines)
    )
  with jax.ensure_compile_time_eval():  # concrete arrays even when first called under jit
    for name, (value, _, _) in params.items():
      variables[name].set_value(jnp.asarray(value, jnp.float32))
  return model


def convert(state: Mapping[str, np.ndarray], what: str = "the checkpoint") -> tuple[str, dict]:
  """(variant, {path: array}) of a torchvision or princeton-vl state dict, checked against the
  model of its variant (`CheckpointMismatchError` naming every mismatched tensor)."""
  layout = detect_layout(state)
  variant, params = (from_torchvision if layout == "torchvision" else from_princeton)(state)
  model = assign(raft.abstract(variant), params, f"{what} ({layout} layout, {variant})")
  return variant, params_of(model)


# ----------------------------------------------------------------------------- the file


def save(path: str, variant: str, params: Mapping[str, np.ndarray], source: str) -> None:
  """Write the converted file (module docstring)."""
  if variant not in raft.SPECS:
    raise ValueError(f"unknown RAFT variant {variant!r}")
  meta = {"format": FORMAT, "variant": variant, "source": source}
  arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    np.savez(f, **arrays, **{META_KEY: np.asarray(json.dumps(meta))})


def read_meta(path: str) -> dict:
  """The file's {"format", "variant", "source"}; a clear error for anything else."""
  if not path:
    raise ValueError("no RAFT weights given (an empty path)")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"RAFT weights {path!r} do not exist")
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z[META_KEY]))
  except (ValueError, KeyError, OSError) as e:
    raise ValueError(
      f"{path} is not a converted RAFT file (python -m mgvm.flow.raft_weights --torchvision "
      f"FILE.pth --out {os.path.basename(path)}; docs/flow.md): {type(e).__name__}: {e}"
    ) from e
  if meta.get("format") != FORMAT or meta.get("variant") not in raft.SPECS:
    raise ValueError(f"{path}: unsupported RAFT file metadata {meta}")
  return meta


def load_params(path: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(metadata, {path: array}) of a converted file."""
  meta = read_meta(path)
  with np.load(path, allow_pickle=False) as z:
    params = {k: z[k] for k in z.files if k != META_KEY}
  return meta, params


def load(path: str, *, variant: str | None = None, precision=None) -> raft.RAFT:
  """The `RAFT` model of a converted file; `variant` (if given) must be the file's."""
  meta, params = load_params(path)
  if variant is not None and meta["variant"] != variant:
    raise ValueError(f"{path} holds {meta['variant']} weights, not {variant}")
  model = raft.abstract(meta["variant"], precision=precision)
  return assign(model, {k: (v, k, v.shape) for k, v in params.items()}, path)


# ----------------------------------------------------------------------------- command line


def _texture(height: int, width: int, shift=(0.0, 0.0), seed: int = 0) -> np.ndarray:
  """float32 [H, W, 3] in [0, 1]: random plane waves evaluated at (x − dx, y − dy)."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
  xs, ys = xs - shift[0], ys - shift[1]
  out = np.zeros((height, width, 3))
  for c in range(3):
    for _ in range(8):
      k = 2 * np.pi / rng.uniform(6, 24)
      t = rng.uniform(0, 2 * np.pi)
      out[..., c] += np.sin(k * np.cos(t) * xs + k * np.sin(t) * ys + rng.uniform(0, 6.3))
  return (0.5 + out / 16).astype(np.float32)


def check(path: str, against: str | None = None, iterations: int = 12) -> dict:
  """Sanity checks of a converted file: the end-point error on a textured image moved by
  (3.0, −2.0) px (trained weights: well under 1 px; random weights: not), and with `against`
  (the source .pth) every iteration's flow against torchvision's RAFT holding those weights."""

  meta = read_meta(path)
  model = load(path)
  shift = (3.0, -2.0)
  a = _texture(128, 160)[None]
  b = _texture(128, 160, shift)[None]
  run = jax.jit(lambda x, y: model(x, y, iterations=iterations, all_iterations=True))
  ours = np.asarray(run(2 * a - 1, 2 * b - 1))
  inner = ours[-1, 0, 8:-8, 8:-8]
  result = {
    **meta,
    "iterations": iterations,
    "epe_px": float(np.linalg.norm(inner - np.float32(shift), axis=-1).mean()),
  }
  if against:
    import torch  # pylint: disable=g-import-not-at-top

    tv = torchvision_model(meta["variant"], read_state_dict(against)[0])
    with torch.no_grad():
      theirs = tv(
        torch.from_numpy(2 * a - 1).permute(0, 3, 1, 2),
        torch.from_numpy(2 * b - 1).permute(0, 3, 1, 2),
        num_flow_updates=iterations,
      )
    diffs = [
      float(np.abs(ours[i] - t.permute(0, 2, 3, 1).numpy()).max()) for i, t in enumerate(theirs)
    ]
    result["max_abs_diff_per_iteration"] = diffs
  return result


_TORCH_LIBRARIES = []  # keeps the schemas import_torchvision defines registered


def import_torchvision():
  """`torchvision`, also where its compiled ops do not load: PyPI's torchvision wheel is built
  for CUDA, and beside a CPU-only torch its import fails registering `torchvision::nms`. The
  two schemas it registers unguarded are then defined (without kernels) first; RAFT uses none
  of the compiled ops."""
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
    import torch  # pylint: disable=g-import-not-at-top

    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
      library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCH_LIBRARIES.append(library)
    import torchvision  # pylint: disable=g-import-not-at-top
  return torchvision


def torchvision_model(variant: str, state: Mapping[str, np.ndarray] | None = None):
  """torchvision's RAFT of `variant` in eval mode, holding `state` (either layout) if given."""
  import torch  # pylint: disable=g-import-not-at-top

  optical_flow = import_torchvision().models.optical_flow
  model = getattr(optical_flow, variant)(weights=None).eval()
  if state is not None:
    if detect_layout(state) == "princeton":
      state = princeton_to_torchvision(state)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
  return model


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--torchvision", metavar="PTH", help="a torchvision raft_* state dict")
  source.add_argument("--princeton", metavar="PTH", help="a princeton-vl RAFT checkpoint")
  source.add_argument("--random", choices=sorted(raft.SPECS), help="random init (tests, costs)")
  source.add_argument("--check", metavar="NPZ", help="check a converted file")
  parser.add_argument("--out", help="the converted .npz to write")
  parser.add_argument("--seed", type=int, default=0, help="--random's seed")
  parser.add_argument("--against", metavar="PTH", help="--check: compare with torchvision")
  parser.add_argument("--iterations", type=int, default=12, help="--check: RAFT updates")
  args = parser.parse_args(argv)
  if args.check:
    result = check(args.check, args.against, args.iterations)
    print(json.dumps(result, indent=2))
    return 0
  if not args.out:
    parser.error("--out is required to convert")
  if args.random:
    variant, params = args.random, params_of(raft.build(args.random, seed=args.seed))
    what = f"random init (seed {args.seed}): meaningless flow, for tests and costs only"
  else:
    given = args.torchvision or args.princeton
    state, _ = read_state_dict(given)
    layout = detect_layout(state)
    expected = "torchvision" if args.torchvision else "princeton"
    if layout != expected:
      parser.error(f"{given} has {layout} keys; use --{layout}")
    variant, params = convert(state, given)
    what = f"{layout}:{os.path.basename(given)}"
  save(args.out, variant, params, what)
  print(f"wrote {args.out}: {variant}, {len(params)} tensors, from {what}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
