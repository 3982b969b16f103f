"""Pictures of what each masker keeps of one clip.

  python -m mgvm.viz masks --config configs/pretrain.py:runlocal --out masks.png
      [--maskers tube,random,mgtc,...] [--index 0] [--split val] [--seed 0]
      [--config.KEY=VALUE ...]

Reads clip `--index` of the config's `--split` (the evaluation pipeline: centre crop, the
config's frame rate), runs every masker on it and writes `--out` (a PNG: one row per masker
below a row of the plain frames, one column per frame) and the same path with `.gif` (one GIF
frame per video frame, the rows stacked, no text). A token is shown as it is: *visible* (the
encoder sees it) at full brightness, a *target* (masked, reconstructed) darkened, and *dropped*
(neither encoded nor reconstructed: a compressor dropped it, or a running-cell decoder skips it)
darkened under a blue tint.

`--maskers` is a comma-separated list of `kind`, `kind:ratio` or `kind:ratio+compressor:ratio`
(`tube:0.75+mgtc:0.25`), or `config` for the config's own `config.masking`; any kind in
`mgvm.masking.BUILDERS` / `COMPRESSORS` is accepted. A kind without a ratio takes the config's
masking ratio (compressors: `mgtc` 0.25, `everest` 0.4). The default list is `config`, `tube`,
`random`, `running_cell`, `mgtc`, `everest`, `mgmae` (with a row of its warped mask map).

`everest` scores the patch embeddings. With `--workdir DIR` they come from the latest checkpoint
that `train.py` wrote there (the config must describe the same model), so the picture shows what a
trained model would keep; without it, from the config's task model (`mgvm.tasks`) freshly
initialised with `config.seed`, i.e. a random linear projection of each tubelet, so the picture
shows the rule, not a trained model's choice.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from mgvm import masking, tasks  # noqa: E402
from mgvm.config import load_config  # noqa: E402
from mgvm.data.device_ops import model_video  # noqa: E402
from mgvm.masking.core import Grid, MaskOut  # noqa: E402

VISIBLE, TARGET, DROPPED = 0, 1, 2
TARGET_SCALE = 0.35  # a target's pixels are multiplied by this
DROPPED_RGB = (40, 90, 200)  # a dropped token: the darkened pixels mixed with this blue
DROPPED_MIX = 0.6  # share of the blue
COMPRESSOR_RATIOS = {"mgtc": 0.25, "everest": 0.4}
PLAIN_KINDS = ("random", "tube", "running_cell", "mgtc")  # kinds that never read `tokens`
# PNG layout, pixels at DPI
DPI = 100
PANEL_PX = 96  # one frame
GAP_PX = 4  # between panels
LEFT_PX, TOP_PX, BOTTOM_PX = 300, 40, 40
GIF_GAP_PX = 4  # white rows between the GIF's stacked rows
GIF_FRAME_MS = 250


# ----------------------------------------------------------------------------- pure pieces


def token_states(out: MaskOut, num_tokens: int, sample: int = 0) -> np.ndarray:
  """int8 [N]: VISIBLE (in ids_keep), TARGET (in ids_target, not visible) or DROPPED (neither)."""
  states = np.full((num_tokens,), DROPPED, np.int8)
  states[np.asarray(out.ids_target)[sample]] = TARGET
  states[np.asarray(out.ids_keep)[sample]] = VISIBLE
  return states


def _per_pixel(values: np.ndarray, grid: Grid, shape: tuple[int, int, int]) -> np.ndarray:
  """[N] per token (index t·h·w + i·w + j) -> [T, H, W] per pixel of the frames."""
  t, h, w = grid
  frames, height, width = shape
  if frames % t or height % h or width % w:
    raise ValueError(f"frames of shape {shape} do not split into the token grid {grid}")
  v = np.asarray(values).reshape(t, h, w)
  return v.repeat(frames // t, 0).repeat(height // h, 1).repeat(width // w, 2)


def tint(frames: np.ndarray, states: np.ndarray) -> np.ndarray:
  """uint8 frames [..., 3] shaded by per-pixel `states` [...] (VISIBLE / TARGET / DROPPED)."""
  x = frames.astype(np.float64)
  dark = x * TARGET_SCALE
  dropped = dark * (1.0 - DROPPED_MIX) + DROPPED_MIX * np.asarray(DROPPED_RGB, np.float64)
  s = states[..., None]
  out = np.where(s == VISIBLE, x, np.where(s == TARGET, dark, dropped))
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def mask_panel(frames: np.ndarray, out: MaskOut, grid: Grid, sample: int = 0) -> np.ndarray:
  """uint8 [T, H, W, 3]: `frames` (uint8 [T, H, W, 3]) with each token shaded by its state in `out`."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be [T, H, W, 3]; got shape {frames.shape}")
  states = token_states(out, math.prod(grid), sample)
  return tint(frames, _per_pixel(states, grid, frames.shape[:3]))


def heat_panel(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
  """uint8 [T, H, W, 3]: `heat` [T, H, W] (scaled to [0, 1]) as an inferno overlay on `frames`."""
  from matplotlib import colormaps

  h = np.asarray(heat, np.float64)
  lo, hi = float(h.min()), float(h.max())
  h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
  colour = colormaps["inferno"](h)[..., :3] * 255.0
  out = (1.0 - alpha) * frames.astype(np.float64) + alpha * colour
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_uint8(video: np.ndarray, normalization: str = "imagenet") -> np.ndarray:
  """Normalised float frames [..., 3] (`normalization`'s statistics) -> uint8 pixels."""
  from mgvm.data.device_ops import normalization_stats

  mean, std = normalization_stats(normalization)
  x = np.asarray(video, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _normalization(config) -> str:
  return config.data.get("normalization", "imagenet") if "data" in config else "imagenet"


def token_grid(config) -> Grid:
  """(T', h, w) of the config's clips: num_frames, image_size and model.tubelet."""
  pt, ph, pw = (int(v) for v in config.model.get("tubelet", (2, 16, 16)))
  size = config.image_size
  height, width = (size, size) if isinstance(size, int) else tuple(size)
  if config.num_frames % pt or height % ph or width % pw:
    raise ValueError(
      f"clips of {config.num_frames} frames x {height}x{width} do not split into "
      f"tubelets {(pt, ph, pw)}"
    )
  return config.num_frames // pt, height // ph, width // pw


# ----------------------------------------------------------------------------- --maskers


def _known_kinds() -> str:
  return ", ".join(["config", *sorted({**masking.BUILDERS, **masking.COMPRESSORS})])


def _parse_part(text: str, whole: str, default_ratio: float | None) -> dict[str, Any]:
  kind, sep, raw = text.strip().partition(":")
  kind = kind.strip()
  kinds = {**masking.BUILDERS, **masking.COMPRESSORS}
  if not kind:
    raise ValueError(f"--maskers entry {whole!r}: a kind is missing; known kinds: {_known_kinds()}")
  if kind not in kinds:
    close = difflib.get_close_matches(kind, list(kinds), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
      f"--maskers entry {whole!r}: unknown kind {kind!r}{hint}; known kinds: {_known_kinds()}"
    )
  accepts_ratio = "ratio" in masking.accepted_keys(kind)
  spec: dict[str, Any] = {"kind": kind}
  if sep:
    if not raw.strip():
      raise ValueError(f"--maskers entry {whole!r}: a ratio is missing after '{kind}:'")
    if not accepts_ratio:
      raise ValueError(f"--maskers entry {whole!r}: kind {kind!r} takes no ratio")
    try:
      spec["ratio"] = float(raw)
    except ValueError:
      raise ValueError(
        f"--maskers entry {whole!r}: ratio {raw.strip()!r} of {kind!r} is not a number"
      ) from None
  elif accepts_ratio:
    ratio = COMPRESSOR_RATIOS.get(kind) if kind in masking.COMPRESSORS else default_ratio
    if ratio is None:
      raise ValueError(
        f"--maskers entry {whole!r}: give {kind!r} a ratio ('{kind}:0.9'); the "
        "config's masking has none"
      )
    spec["ratio"] = ratio
  return spec


def parse_spec(text: str, default_ratio: float | None = None) -> dict[str, Any]:
  """One `--maskers` entry (`kind`, `kind:ratio`, `kind:ratio+compressor:ratio`) -> masking config."""
  parts = text.split("+")
  if len(parts) > 2:
    raise ValueError(f"--maskers entry {text!r}: at most one '+compressor' may follow a masker")
  spec = _parse_part(parts[0], text, default_ratio)
  if len(parts) == 2:
    if spec["kind"] in masking.COMPRESSORS:
      raise ValueError(
        f"--maskers entry {text!r}: {spec['kind']!r} is a compressor; it goes after "
        f"'+' (e.g. 'tube:0.9+{spec['kind']}:0.25')"
      )
    compress = _parse_part(parts[1], text, default_ratio)
    if compress["kind"] not in masking.COMPRESSORS:
      raise ValueError(
        f"--maskers entry {text!r}: {compress['kind']!r} after '+' is not a "
        f"compressor; compressors: {', '.join(sorted(masking.COMPRESSORS))}"
      )
    spec["compress"] = compress
  return spec


def spec_label(spec: dict[str, Any]) -> str:
  """`tube:0.75+mgtc:0.25`-style name of a masking config (other keys in brackets)."""

  def one(s):
    extra = {k: v for k, v in s.items() if k not in ("kind", "ratio", "compress")}
    text = s["kind"] + (f":{s['ratio']:g}" if "ratio" in s else "")
    return text + (" [" + ", ".join(f"{k}={v}" for k, v in extra.items()) + "]" if extra else "")

  compress = spec.get("compress") or None
  compress = compress if compress and compress.get("kind") else None
  return one(spec) + (f"+{one(compress)}" if compress else "")


def masker_specs(config, names: str | None = None) -> list[tuple[str, dict[str, Any]]]:
  """(label, masking config) per row: `names` parsed, or the default list."""
  own = config.masking.to_dict() if hasattr(config.masking, "to_dict") else dict(config.masking)
  default_ratio = own.get("ratio")
  if names is None:
    entries = ["config", "tube", "random", "running_cell", "mgtc", "everest", "mgmae"]
  else:
    entries = [e.strip() for e in names.split(",")]
    if not any(entries):
      raise ValueError("--maskers is empty; give e.g. 'tube,random,mgtc'")
    if "" in entries:
      raise ValueError(f"--maskers {names!r} has an empty entry (two commas in a row?)")
  out = []
  for entry in entries:
    if entry == "config":
      out.append((f"config: {spec_label(own)}", own))
    else:
      spec = parse_spec(entry, default_ratio)
      out.append((spec_label(spec), spec))
  return out


# ----------------------------------------------------------------------------- config and clip


def read_clip(
  config, *, split: str = "val", index: int = 0, log=print
) -> tuple[np.ndarray, dict[str, Any]]:
  """Clip `index` of `split` as the evaluation pipeline gives it: float32 [T, H, W, 3] (normalised)."""
  from mgvm.data import pipeline, sources
  from mgvm.tasks.common import eval_target_fps

  source = sources.resolve(config.data, log=log)
  files = source.split(split)
  ds = pipeline.make_dataset(
    files,
    mode="eval",
    num_frames=config.num_frames,
    image_size=config.image_size,
    batch_size=1,
    target_fps=eval_target_fps(config.data.target_fps),
    frame_stride=config.data.frame_stride,
    temporal=config.data.temporal,
    parse_fn=source.parse_fn,
  )
  if index < 0:
    raise ValueError(f"--index must be >= 0, got {index}")
  for batch in ds.skip(index).take(1).as_numpy_iterator():
    info = {k: batch[k][0].tolist() for k in ("label", "fps", "clip_fps", "frame_indices")}
    names = source.class_names
    if names and 0 <= info["label"] < len(names):
      info["class"] = names[info["label"]]
    video = model_video({"video": batch["video"][:1]}, normalization=_normalization(config))
    return np.asarray(video[0]), info
  raise IndexError(f"split {split!r} has no clip {index} ({source.root})")


def patch_tokens(config, video: np.ndarray, workdir: str | None = None) -> np.ndarray:
  """[1, N, D] float32 patch embeddings of `video` [1, T, H, W, 3].

  Without `workdir` the model is freshly initialised inside one `jax.jit`, so only the patch
  embedding's parameters are computed; with it, the latest checkpoint's params are restored
  into the model `config` describes (a mismatch names the parameter).
  """
  import jax
  from flax import nnx

  from mgvm.weights import encoder_from_pretrained, merge_params

  task = tasks.get(config.task)
  if workdir is None:

    def embed(x):
      return task.viz_model(config).encoder.embed(x).astype(np.float32)

    return np.asarray(jax.jit(embed)(video))

  from mgvm.train import checkpoint as checkpoint_lib

  model = task.viz_model(config)
  params = nnx.state(model, nnx.Param)
  trained = checkpoint_lib.load_params(workdir)  # a pre-training or a classifier workdir
  nnx.update(
    model, merge_params(params, encoder_from_pretrained(params, trained, log=lambda _: None))
  )
  return np.asarray(nnx.jit(lambda m, x: m.encoder.embed(x).astype(np.float32))(model, video))


# ----------------------------------------------------------------------------- rows


def mgmae_heat(key, video: np.ndarray, grid: Grid, spec: dict[str, Any]) -> np.ndarray:
  """float64 [T, H, W]: MGMAE's warped mask map of the first clip of `video` (the masker's own
  options, `mgvm.masking.mgmae.mask_volume`)."""
  from mgvm.masking import mgmae

  options = {k: v for k, v in spec.items() if k not in ("kind", "topk_on_all", "compress")}
  return np.asarray(mgmae.mask_volume(key, video, grid=grid, **options)[0], np.float64)


def mask_rows(
  config,
  video: np.ndarray,
  specs: list[tuple[str, dict[str, Any]]],
  *,
  seed: int = 0,
  workdir: str | None = None,
) -> list[tuple[str, np.ndarray]]:
  """(title, uint8 [T, H, W, 3]) per row: the plain frames, then one row per masker spec."""
  import jax

  grid = token_grid(config)
  frames = to_uint8(video, _normalization(config))
  batch = np.asarray(video, np.float32)[None]
  kinds = {s["kind"] for _, s in specs} | {
    s["compress"]["kind"] for _, s in specs if s.get("compress") and s["compress"].get("kind")
  }
  tokens = patch_tokens(config, batch, workdir) if kinds - set(PLAIN_KINDS) else None
  key = jax.random.key(seed)
  rows = [
    (
      f"clip: {frames.shape[0]} frames, {frames.shape[1]}x{frames.shape[2]}, "
      f"grid {grid[0]}x{grid[1]}x{grid[2]}",
      frames,
    )
  ]
  seen = set()
  for label, spec in specs:
    try:
      masker = masking.build(spec, grid)
    except ValueError as e:
      raise ValueError(f"masker {label!r}: {e}") from None
    ident = (masker.kind, repr(sorted(masker.params.items())))
    if ident in seen:
      continue
    seen.add(ident)
    out = jax.jit(lambda k, v, t, m=masker: m(k, v, t))(key, batch, tokens)  # one compile each
    states = token_states(out, masker.num_tokens)
    dropped = int((states == DROPPED).sum())
    title = (
      f"{label}\n{masker.num_keep} visible / {masker.num_target} targets / "
      f"{masker.num_tokens} tokens" + (f", {dropped} dropped" if dropped else "")
    )
    rows.append((title, mask_panel(frames, out, grid)))
    if spec["kind"] == "mgmae":
      heat = mgmae_heat(key, batch, grid, spec)
      rows.append((f"{label}: warped mask map", heat_panel(frames, heat)))
  return rows


# ----------------------------------------------------------------------------- output


def png_size(num_rows: int, num_frames: int) -> tuple[int, int]:
  """(width, height) in pixels of the PNG of `num_rows` x `num_frames` panels."""
  return (
    LEFT_PX + num_frames * (PANEL_PX + GAP_PX),
    TOP_PX + num_rows * (PANEL_PX + GAP_PX) + BOTTOM_PX,
  )


def write_png(path: str, rows: list[tuple[str, np.ndarray]], *, title: str = "") -> None:
  """The rows as a grid of panels (PANEL_PX each) with row titles and a colour legend."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.patches import Patch

  num_frames = rows[0][1].shape[0]
  width, height = png_size(len(rows), num_frames)
  fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
  FigureCanvasAgg(fig)
  for r, (label, panel) in enumerate(rows):
    top = TOP_PX + r * (PANEL_PX + GAP_PX)
    for f in range(num_frames):
      left = LEFT_PX + f * (PANEL_PX + GAP_PX)
      ax = fig.add_axes(
        (left / width, 1 - (top + PANEL_PX) / height, PANEL_PX / width, PANEL_PX / height)
      )
      ax.imshow(panel[f], interpolation="nearest", aspect="auto")
      ax.set_axis_off()
      if r == 0:
        ax.set_title(f"frame {f}", fontsize=7, pad=2)
    fig.text(
      (LEFT_PX - 8) / width,
      1 - (top + PANEL_PX / 2) / height,
      label,
      ha="right",
      va="center",
      fontsize=7,
    )
  if title:
    fig.text(4 / width, 1 - 4 / height, title, ha="left", va="top", fontsize=7)
  swatch = np.full((1, 1, 3), 200, np.uint8)
  colours = [
    tint(swatch, np.full((1, 1), s, np.int8))[0, 0] / 255.0 for s in (VISIBLE, TARGET, DROPPED)
  ]
  names = [
    "visible (encoder input)",
    "target (masked, reconstructed)",
    "dropped (neither encoded nor reconstructed)",
  ]
  fig.legend(
    handles=[Patch(facecolor=c, edgecolor="black", label=n) for c, n in zip(colours, names)],
    loc="lower center",
    ncol=3,
    fontsize=7,
    frameon=False,
  )
  fig.savefig(path, dpi=DPI)


def gif_frames(rows: list[tuple[str, np.ndarray]], scale: int | None = None) -> list[np.ndarray]:
  """One uint8 image per video frame: the rows' panels stacked, upscaled by `scale`."""
  panels = [p for _, p in rows]
  t, h, w, _ = panels[0].shape
  scale = scale or max(1, math.ceil(PANEL_PX / max(h, w)))
  gap = np.full((GIF_GAP_PX, w * scale, 3), 255, np.uint8)
  out = []
  for f in range(t):
    parts = []
    for i, p in enumerate(panels):
      if i:
        parts.append(gap)
      parts.append(p[f].repeat(scale, 0).repeat(scale, 1))
    out.append(np.concatenate(parts, axis=0))
  return out


def write_gif(path: str, rows: list[tuple[str, np.ndarray]]) -> None:
  from PIL import Image

  images = [Image.fromarray(a) for a in gif_frames(rows)]
  images[0].save(path, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0)


def render_masks(
  config,
  out: str,
  *,
  maskers: str | None = None,
  index: int = 0,
  split: str = "val",
  seed: int = 0,
  workdir: str | None = None,
  log=print,
) -> dict[str, Any]:
  """Writes `out` (PNG) and `out` with `.gif`; returns {"png", "gif", "rows", "frames", "clip"}."""
  specs = masker_specs(config, maskers)  # fail on a bad spec before reading any data
  grid = token_grid(config)
  for label, spec in specs:
    try:
      masking.build(spec, grid)
    except ValueError as e:
      raise ValueError(f"masker {label!r}: {e}") from None
  video, info = read_clip(config, split=split, index=index, log=log)
  rows = mask_rows(config, video, specs, seed=seed, workdir=workdir)
  what = f" ({info['class']})" if "class" in info else ""
  title = (
    f"{split} clip {index}{what}: source frames {info['frame_indices'][0]}..."
    f"{info['frame_indices'][-1]} at {info['clip_fps']:.3g} fps; masking seed {seed}"
  )
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  write_png(out, rows, title=title)
  gif = os.path.splitext(out)[0] + ".gif"
  write_gif(gif, rows)
  return {
    "png": out,
    "gif": gif,
    "rows": [r[0] for r in rows],
    "frames": rows[0][1].shape[0],
    "clip": info,
  }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(prog="python -m mgvm.viz", description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  m = sub.add_parser(
    "masks",
    help="which tokens each masker keeps, for one clip",
    description=__doc__.split("\n\n", 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  m.add_argument(
    "--config", required=True, help="config file[:arg], e.g. configs/pretrain.py:runlocal"
  )
  m.add_argument("--out", required=True, help="PNG path; the GIF goes next to it as .gif")
  m.add_argument(
    "--maskers",
    default=None,
    help="comma-separated kind[:ratio][+compressor:ratio] or 'config' (default: "
    "config,tube,random,running_cell,mgtc,everest,mgmae)",
  )
  m.add_argument("--index", type=int, default=0, help="clip number in the split")
  m.add_argument("--split", default="val")
  m.add_argument("--seed", type=int, default=0, help="masking PRNG seed")
  m.add_argument(
    "--workdir",
    default=None,
    help="train.py workdir whose latest checkpoint gives EVEREST's patch embeddings "
    "(default: a freshly initialised model)",
  )
  a, extra = p.parse_known_args(argv)
  try:
    config = load_config(a.config, extra)
    result = render_masks(
      config, a.out, maskers=a.maskers, index=a.index, split=a.split, seed=a.seed, workdir=a.workdir
    )
  except (ValueError, FileNotFoundError, IndexError) as e:
    p.exit(2, f"python -m mgvm.viz masks: {e}\n")
  print(
    f"wrote {result['png']} and {result['gif']}: {len(result['rows'])} rows x "
    f"{result['frames']} frames"
  )
  return result


if __name__ == "__main__":
  main()
