"""Codec motion vs pixel motion for token dropping (issue #17): actor recall, fine-tuning, costs.

  python benchmarks/codec_motion.py --out /tmp/mgvm/codec_motion [--quick]
      [--parts recall,costs,steps,finetune] [--seeds 0,1,2] [--videos 48]
      [--keeps 0.25,0.5,0.75] [--train 600] [--test 200] [--steps 1000] [--ft-keep 0.5]
      [--ft-seeds 0,1,2] [--ft-droppers random,everest,...] [--ft-classes move_left,...]

On the synthetic set (64 px, 8-frame clips at 6 fps as `configs/finetune.py:runlocal`, 1-2
distractors) with a fast camera pan (`--pan` image sizes per second) and without, every dropper
keeps the same K = int(keep · N) tokens:
- `recall`: per seed (a fresh video set) the share of the actor's ground-truth tokens (the 16-px
  patch overlaps an actor box in one of the tubelet's frames) and of the distractors' tokens
  each dropper keeps; codec motion from H.264 with libx264's defaults (`codec_motion`), summed
  between the sampled frames as the pipeline does; EVEREST on a randomly initialised patch
  embedding.
- `finetune`: videos of `--ft-classes` (default the 4 axis translations: 15 classes stay on the
  ViT's loss plateau for longer than this budget) written as H.264 files, `prepare
  --motion-vectors`, the runlocal classifier trained from scratch for `--steps` steps per
  dropper and seed (default: random, the best non-codec and the best codec dropper by actor
  recall at `--ft-keep` with the pan), top-1 on the test split (2 clips per video).
- `steps`: the compiled train step (forward, backward, SGD update) per dropper on one batch.
- `costs`: the motion vectors at prepare time (`codec.motion_cost`) and MGMAE's in-graph
  Lucas-Kanade flow per clip (XLA FLOPs, measured time).
Everything is cached under OUT (a rerun computes only what is missing); OUT/report.md holds the
tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import study_runs  # noqa: E402

IMAGE, FRAMES, FPS, PATCH, TUBELET = 64, 8, 6.0, 16, 2
GRID = (FRAMES // TUBELET, IMAGE // PATCH, IMAGE // PATCH)
X264_DEFAULTS = {"threads": "1"}  # libx264's defaults (B-frames, 3 refs): a typical H.264 file

# name -> compressor overrides (configs.common.compressor(kind, ratio, **overrides))
DROPPERS = {
  "random": ("random_drop", {}),
  "mgtc_pixels": ("mgtc", {"first": "next"}),
  "mgtc_codec": ("mgtc", {"first": "next", "motion": "codec"}),
  "mgtc_codec_median": (
    "mgtc",
    {"first": "next", "motion": "codec", "compensate_camera": "median"},
  ),
  "mgtc_codec_affine": (
    "mgtc",
    {"first": "next", "motion": "codec", "compensate_camera": "affine"},
  ),
  "rlt_pixels": ("rlt", {}),
  "rlt_codec_median": ("rlt", {"motion": "codec", "compensate_camera": "median"}),
  "everest": ("everest", {}),
}
FT_CLASSES = ("move_left", "move_right", "move_up", "move_down")  # learnt in ~1000 steps
PIXEL = ("mgtc_pixels", "rlt_pixels", "everest")
CODEC = ("mgtc_codec", "mgtc_codec_median", "mgtc_codec_affine", "rlt_codec_median")


def scene_config(pan: bool, pan_speed: float = 0.25, detail: float = 1.0, classes=None):
  """The study's synthetic set: runlocal's fast clips (`configs/common.runlocal_data`), 1-2
  distractors, the default background texture (`detail`), optionally a pan of `pan_speed`
  ± 20 % image sizes per second."""
  import dataclasses

  from configs import finetune
  from mgvm.datasets.synthetic import CLASSES, SyntheticConfig

  runlocal = finetune.get_config("runlocal").data.synthetic
  fields = {f.name: runlocal[f.name] for f in dataclasses.fields(SyntheticConfig)}
  return SyntheticConfig(
    **{
      **fields,
      "image_size": IMAGE,
      "classes": tuple(classes or CLASSES),
      "min_distractors": 1,
      "max_distractors": 2,
      "background_detail": detail,
      "camera_pan": pan,
      "pan_speed": (0.8 * pan_speed, 1.2 * pan_speed),
    }
  )


def dropper_config(name: str, keep: float):
  from configs import common

  kind, overrides = DROPPERS[name]
  return common.compressor(kind, round(1.0 - keep, 6), **overrides)


# ----------------------------------------------------------------------------- clips


def sample_indices(num_frames: int, fps: float, clip: int = FRAMES, target_fps: float = FPS):
  """Source frame of each clip frame from frame 0 at stride fps / target_fps (clamped)."""
  stride = fps / target_fps
  return np.minimum(np.floor(np.arange(clip) * stride + 1e-6).astype(int), num_frames - 1)


def clip_motion(vectors: np.ndarray, valid: np.ndarray, picks: np.ndarray):
  """(motion [T, h, w, 2], motion_valid [T, h, w]) of the clip frames `picks` from the
  per-frame field: entry k sums frames (p_{k−1}, p_k] (0 for a repeated frame; entry 0 is 0),
  valid where all of them are (1 for a repeat, 0 for entry 0), as the pipeline does."""
  t = len(picks)
  motion = np.zeros((t, *vectors.shape[1:]), np.float32)
  ok = np.zeros((t, *valid.shape[1:]), np.float32)
  for k in range(1, t):
    span = slice(picks[k - 1] + 1, picks[k] + 1)
    motion[k] = vectors[span].sum(0)
    ok[k] = valid[span].all(0) if picks[k] > picks[k - 1] else 1.0
  return motion, ok


def token_cover(boxes: np.ndarray, size: int = IMAGE, patch: int = PATCH, tubelet: int = TUBELET):
  """bool [T', h, w]: tokens whose patch overlaps one of `boxes` [T, O, 4] (x1 y1 x2 y2 /
  size) in one of the tubelet's frames."""
  t = boxes.shape[0]
  edges = np.arange(size // patch) * patch
  px = boxes * size
  x1, y1, x2, y2 = (px[..., i][..., None] for i in range(4))  # [T, O, 1]
  cols = (x1 < edges + patch) & (x2 > edges)  # [T, O, w]
  rows = (y1 < edges + patch) & (y2 > edges)  # [T, O, h]
  cover = (rows[..., :, None] & cols[..., None, :]).any(1)  # [T, h, w]
  return cover.reshape(t // tubelet, tubelet, *cover.shape[1:]).any(1)


def recall(keep_mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """[B]: share of the `truth` tokens [B, N] the dropper keeps (`keep_mask` [B, N]); NaN
  where a clip has none."""
  hit = (keep_mask & truth).sum(-1)
  total = truth.sum(-1)
  return np.where(total > 0, hit / np.maximum(total, 1), np.nan)


def make_clips(pan: bool, seed: int, count: int, pan_speed: float) -> dict:
  """`count` rendered videos of seed `seed` as clips: video uint8, motion, motion_valid, actor
  and distractor token masks."""
  from mgvm.datasets import motion_vectors
  from mgvm.datasets.synthetic.render import render_scene
  from mgvm.datasets.synthetic.scene import sample_scene

  config = scene_config(pan, pan_speed)
  out = {k: [] for k in ("video", "motion", "motion_valid", "actor", "distractor")}
  for index in range(count):
    scene = sample_scene(config, seed, "val", index)
    video = render_scene(scene)
    field = motion_vectors.codec_motion(video.frames, block=PATCH, options=X264_DEFAULTS)
    picks = sample_indices(video.num_frames, video.fps)
    motion, ok = clip_motion(field.vectors, field.valid, picks)
    a = scene.num_actors
    out["video"].append(video.frames[picks])
    out["motion"].append(motion)
    out["motion_valid"].append(ok)
    out["actor"].append(token_cover(video.object_boxes[picks][:, :a]).reshape(-1))
    out["distractor"].append(token_cover(video.object_boxes[picks][:, a:]).reshape(-1))
  return {k: np.stack(v) for k, v in out.items()}


def normalise(video: np.ndarray) -> np.ndarray:
  from mgvm.data.device_ops import MEAN, STD

  return ((video.astype(np.float32) / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).astype(
    np.float32
  )


def _embedder(seed: int = 0):
  """A randomly initialised runlocal classifier's patch embedding (EVEREST's scores)."""
  import jax

  from configs import finetune as ft_config
  from mgvm.tasks import finetune

  config = ft_config.get_config("runlocal")
  config.seed = seed
  model = finetune.build_model(config, num_classes=15)
  return jax.jit(lambda v: model.encoder.embed(v))


def keep_masks(clips: dict, names, keeps, seed: int = 0) -> dict:
  """{(name, keep): bool [B, N] kept tokens} of every dropper at every keep rate."""
  import jax
  import jax.numpy as jnp

  from mgvm import masking

  video = jnp.asarray(normalise(clips["video"]))
  tokens = _embedder(seed)(video)
  motion, valid = jnp.asarray(clips["motion"]), jnp.asarray(clips["motion_valid"])
  out = {}
  for name in names:
    for keep in keeps:
      m = masking.build(dropper_config(name, keep), GRID)
      res = jax.jit(lambda k, v, t, mo, mv, m=m: m(k, v, t, motion=mo, motion_valid=mv))(
        jax.random.key(seed), video, tokens, motion, valid
      )
      out[(name, keep)] = ~np.asarray(res.mask)
  return out


def recall_part(out: str, pans, seeds, keeps, videos: int, pan_speed: float) -> dict:
  """{pan: {seed: {name: {keep: (actor recall, distractor recall)}}}}, cached per (pan, seed)."""
  result = {}
  for pan in pans:
    for seed in seeds:
      path = os.path.join(out, "recall", f"pan{int(pan)}-v{videos}-s{seed}.json")
      row = study_runs.load(path)
      if row is None or any(n not in row or str(k) not in row[n] for n in DROPPERS for k in keeps):
        start = time.time()
        clips = make_clips(pan, seed, videos, pan_speed)
        masks = keep_masks(clips, list(DROPPERS), keeps, seed)
        row = {
          name: {
            str(keep): [
              float(np.nanmean(recall(masks[(name, keep)], clips["actor"]))),
              float(np.nanmean(recall(masks[(name, keep)], clips["distractor"]))),
            ]
            for keep in keeps
          }
          for name in DROPPERS
        }
        row["_meta"] = {
          "videos": videos,
          "actor_tokens": float(clips["actor"].mean()),
          "distractor_tokens": float(clips["distractor"].mean()),
          "seconds": round(time.time() - start, 1),
        }
        study_runs.save(path, row)
        print(f"recall pan={pan} seed={seed}: {row['_meta']}", flush=True)
      result.setdefault(pan, {})[seed] = row
  return result


def mean_std(values) -> tuple[float, float]:
  values = [v for v in values if v == v]
  if not values:
    return float("nan"), float("nan")
  return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def recall_table(result: dict, keeps, which: int = 0) -> str:
  """Markdown: rows droppers, columns pan × keep; mean ± std over seeds (`which` 0: actor,
  1: distractor recall)."""
  pans = sorted(result, reverse=True)
  head = [f"pan {'on' if p else 'off'}, keep {k:.0%}" for p in pans for k in keeps]
  lines = ["| dropper | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
  for name in DROPPERS:
    cells = []
    for pan in pans:
      for keep in keeps:
        m, s = mean_std([r[name][str(keep)][which] for r in result[pan].values()])
        cells.append(f"{m:.3f} ± {s:.3f}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


PAIRS = (
  ("mgtc_codec_median", "mgtc_pixels"),
  ("rlt_codec_median", "rlt_pixels"),
  ("mgtc_codec_median", "mgtc_codec"),
  ("mgtc_codec_affine", "mgtc_codec_median"),
  ("mgtc_codec_median", "everest"),
)


def paired_table(result: dict, keeps, pairs=PAIRS) -> str:
  """Markdown: actor recall of a − b per seed (the same videos), per pan × keep."""
  pans = sorted(result, reverse=True)
  head = [f"pan {'on' if p else 'off'}, keep {k:.0%}" for p in pans for k in keeps]
  lines = ["| a − b | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
  for a, b in pairs:
    cells = []
    for pan in pans:
      for keep in keeps:
        rows = result[pan].values()
        d = [r[a][str(keep)][0] - r[b][str(keep)][0] for r in rows]
        cells.append(" ".join(f"{x:+.3f}" for x in d))
    lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def best(result: dict, keep: float, group) -> str:
  """The dropper of `group` with the highest mean actor recall at `keep` with the pan."""
  pan = max(result)
  score = lambda n: mean_std([r[n][str(keep)][0] for r in result[pan].values()])[0]  # noqa: E731
  return max(group, key=score)


# ----------------------------------------------------------------------------- costs


def flow_cost(clips: int = 4, repeats: int = 5) -> dict:
  """MGMAE's in-graph LK flow (`mgvm.flow.estimate`) on the 7 adjacent pairs of each of `clips`
  clips of 8 × 64²: XLA FLOPs and measured ms per clip."""
  import jax
  import jax.numpy as jnp

  from mgvm.evaluate.detection import flops_of
  from mgvm.flow import estimate

  data = make_clips(False, 0, clips, 0.25)
  video = jnp.asarray(normalise(data["video"]))
  a = video[:, 1:].reshape(-1, IMAGE, IMAGE, 3)
  b = video[:, :-1].reshape(-1, IMAGE, IMAGE, 3)
  compiled = jax.jit(estimate).lower(a, b).compile()
  jax.block_until_ready(compiled(a, b))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(a, b))
    times.append(time.perf_counter() - start)
  return {
    "gflops_per_clip": flops_of(compiled) / clips / 1e9,
    "ms_per_clip": 1000 * min(times) / clips,
    "pairs_per_clip": FRAMES - 1,
  }


def costs_part(out: str, quick: bool) -> dict:
  path = os.path.join(out, "costs.json")
  cached = study_runs.load(path)
  if cached:
    return cached
  from mgvm.datasets.synthetic import codec

  n = 2 if quick else 8
  row = {
    "motion_cost": codec.motion_cost(
      scene_config(True), indices=range(n), repeats=2 if quick else 3
    ),
    "flow": flow_cost(2 if quick else 8),
  }
  study_runs.save(path, row)
  return row


def steps_part(out: str, keep: float, repeats: int = 10, batch: int = 16) -> dict:
  """ms per compiled train step (forward, backward, SGD) per dropper at `keep` and with all
  tokens, on one batch, measured side by side (best of `repeats`)."""
  path = os.path.join(out, f"steps-k{keep}.json")
  cached = study_runs.load(path)
  if cached:
    return cached
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from configs import finetune as ft_config
  from mgvm import masking
  from mgvm.tasks import finetune
  from mgvm.train.steps import classify

  config = ft_config.get_config("runlocal")
  model = finetune.build_model(config, num_classes=15)
  graphdef, params = nnx.split(model, nnx.Param)
  data = make_clips(True, 0, batch, 0.25)
  video = jnp.asarray(normalise(data["video"]))
  motion, valid = jnp.asarray(data["motion"]), jnp.asarray(data["motion_valid"])
  labels = jnp.arange(batch) % 15
  runs = {}
  for name in ["all tokens", *DROPPERS]:
    compressor = None if name == "all tokens" else masking.build(dropper_config(name, keep), GRID)

    def step(params, key, compressor=compressor):
      def loss(p):
        logits, _ = classify(
          nnx.merge(graphdef, p),
          video,
          compressor,
          key,
          motion=motion,
          motion_valid=valid,
          deterministic=True,
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

      value, grads = jax.value_and_grad(loss)(params)
      return jax.tree.map(lambda a, g: a - 1e-3 * g, params, grads), value

    runs[name] = jax.jit(step).lower(params, jax.random.key(0)).compile()
    jax.block_until_ready(runs[name](params, jax.random.key(0)))
  times = {name: [] for name in runs}
  for _ in range(repeats):  # interleaved: every dropper sees the same machine state
    for name, run in runs.items():
      start = time.perf_counter()
      jax.block_until_ready(run(params, jax.random.key(0)))
      times[name].append(time.perf_counter() - start)
  row = {name: 1000 * min(t) for name, t in times.items()}
  study_runs.save(path, row)
  return row


# ----------------------------------------------------------------------------- fine-tuning


def write_split(
  root: str, pan: bool, split: str, count: int, pan_speed: float, classes, seed: int = 0
):
  """Renders `count` videos of `split`, writes them as H.264 (libx264 defaults) and the list."""
  from mgvm.datasets.synthetic.codec import write_video
  from mgvm.datasets.synthetic.render import render_scene
  from mgvm.datasets.synthetic.scene import sample_scene

  config = scene_config(pan, pan_speed, classes=classes)
  os.makedirs(os.path.join(root, "videos", split), exist_ok=True)
  lines = []
  for index in range(count):
    scene = sample_scene(config, seed, split, index)
    video = render_scene(scene)
    rel = f"videos/{split}/{index:05d}.mp4"
    write_video(os.path.join(root, rel), video.frames, video.fps)
    lines.append(f"{rel} {scene.labels()[0]}")
  with open(os.path.join(root, f"{split}.csv"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("\n".join(classes) + "\n")


def prepare_data(out: str, pan: bool, counts: dict, pan_speed: float, classes) -> str:
  """OUT/data/pan{0,1}-…/shards: the videos through `prepare --motion-vectors` (cached)."""
  tag = "-".join(f"{k}{v}" for k, v in counts.items()) + f"-c{len(classes)}"
  root = os.path.join(out, "data", f"pan{int(pan)}-{tag}")
  shards = os.path.join(root, "shards")
  for split, count in counts.items():
    if os.path.exists(os.path.join(root, f"{split}.done")):
      continue
    start = time.time()
    write_split(root, pan, split, count, pan_speed, classes)
    cmd = [
      sys.executable,
      "-m",
      "mgvm.datasets.prepare",
      "--csv",
      os.path.join(root, f"{split}.csv"),
      "--root",
      root,
      "--out",
      shards,
      "--split",
      split,
      "--motion-vectors",
      "--workers",
      "2",
      "--no-progress",
      "--classes",
      os.path.join(root, "classes.txt"),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(root, f"{split}.done"), "w") as f:
      f.write(f"{time.time() - start:.1f}\n")
    print(f"prepared {root} {split}: {time.time() - start:.0f} s", flush=True)
  return shards


def finetune_config(shards: str, name: str, keep: float, seed: int, steps: int, classes: int):
  from configs import common
  from configs import finetune as ft_config

  config = ft_config.get_config("runlocal")
  config.data.source = "tfrecord"
  config.data.dir = shards
  config.num_classes = classes
  config.masking = dropper_config(name, keep)
  return common.short_run(config, seed=seed, steps=steps)


def finetune_one(out, shards, pan, name, keep, seed, steps, classes):
  tag = f"pan{int(pan)}-{name}-k{keep}-n{steps}-c{len(classes)}-s{seed}"
  config = finetune_config(shards, name, keep, seed, steps, len(classes))
  row = {"pan": pan, "dropper": name, "keep": keep, "seed": seed, "steps": steps}
  return study_runs.train_and_test(config, os.path.join(out, "finetune", tag), row)


def finetune_table(rows: list[dict]) -> str:
  table = {}
  for r in rows:
    table.setdefault((r["pan"], r["dropper"]), []).append(r["top1"])
  lines = [
    "| pan | dropper | top-1 mean ± std | spread (max − min) | per seed |",
    "|---|---|---|---|---|",
  ]
  for (pan, name), v in sorted(table.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
    m, s = mean_std(v)
    lines.append(
      f"| {'on' if pan else 'off'} | {name} | {m:.3f} ± {s:.3f} | {max(v) - min(v):.3f} | "
      + ", ".join(f"{x:.3f}" for x in v)
      + " |"
    )
  return "\n".join(lines)


def finetune_paired(rows: list[dict], pairs) -> str:
  """Markdown: top-1 of a − b per seed (same init, data order and test set), per pan."""
  top = {(r["pan"], r["dropper"], r["seed"]): r["top1"] for r in rows}
  seeds = sorted({r["seed"] for r in rows})
  lines = ["| pan | a − b | per seed | mean | a ahead in |", "|---|---|---|---|---|"]
  for pan in (True, False):
    for a, b in pairs:
      d = [
        top[pan, a, s] - top[pan, b, s] for s in seeds if (pan, a, s) in top and (pan, b, s) in top
      ]
      if d:
        lines.append(
          f"| {'on' if pan else 'off'} | {a} − {b} | "
          + " ".join(f"{x:+.3f}" for x in d)
          + f" | {statistics.mean(d):+.3f} | {sum(x > 0 for x in d)} of {len(d)} |"
        )
  return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def versions() -> dict:
  import av
  import jax

  from mgvm.datasets import motion_vectors

  info = {"jax": jax.__version__, "pyav": av.__version__, "cpus": os.cpu_count()}
  try:
    info["libx264"] = motion_vectors.x264_version()
  except Exception:  # noqa: BLE001
    pass
  return info


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="/tmp/mgvm/codec_motion")
  p.add_argument("--quick", action="store_true", help="1 seed, tiny sets, 20 fine-tuning steps")
  p.add_argument("--parts", default="recall,costs,steps,finetune")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--ft-seeds", default="", help="fine-tuning seeds (default: --seeds)")
  p.add_argument("--videos", type=int, default=48, help="videos per recall seed")
  p.add_argument("--keeps", default="0.25,0.5,0.75")
  p.add_argument("--pan-speed", type=float, default=0.25, help="image sizes per second")
  p.add_argument("--train", type=int, default=600)
  p.add_argument("--test", type=int, default=200)
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--ft-keep", type=float, default=0.5)
  p.add_argument("--ft-classes", default=",".join(FT_CLASSES), help="fine-tuning classes")
  p.add_argument(
    "--ft-droppers",
    default="",
    help="fine-tuned droppers (default: random, best pixel, best codec)",
  )
  a = p.parse_args(argv)
  if a.quick:
    a.seeds, a.videos, a.train, a.test, a.steps = "0", 8, 32, 16, 20
  seeds = [int(s) for s in a.seeds.split(",")]
  ft_seeds = [int(s) for s in (a.ft_seeds or a.seeds).split(",")]
  keeps = [float(k) for k in a.keeps.split(",")]
  parts = a.parts.split(",")
  os.makedirs(a.out, exist_ok=True)
  report = [
    f"# codec_motion {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    "",
    json.dumps(versions()),
  ]
  result = {}
  if "recall" in parts or "finetune" in parts:
    rec = recall_part(a.out, (True, False), seeds, keeps, a.videos, a.pan_speed)
    result["recall"] = rec
    report += ["", "## actor token recall", "", recall_table(rec, keeps, 0)]
    report += ["", "## distractor token recall", "", recall_table(rec, keeps, 1)]
    report += ["", "## actor recall, paired differences per seed", "", paired_table(rec, keeps)]
  if "costs" in parts:
    result["costs"] = costs_part(a.out, a.quick)
    report += ["", "## costs", "", "```", json.dumps(result["costs"], indent=1), "```"]
  if "steps" in parts:
    result["steps"] = steps_part(a.out, a.ft_keep, repeats=3 if a.quick else 10)
    base = result["steps"]["all tokens"]
    report += [
      "",
      "## train step (ms, batch 16)",
      "",
      "| dropper | ms | vs all tokens |",
      "|---|---|---|",
    ]
    report += [f"| {n} | {v:.1f} | {v / base:.2f} |" for n, v in result["steps"].items()]
  if "finetune" in parts:
    names = a.ft_droppers.split(",") if a.ft_droppers else []
    names = names or ["random", best(rec, a.ft_keep, PIXEL), best(rec, a.ft_keep, CODEC)]
    codec = [n for n in names if n in CODEC]
    codec_vs = [(c, n) for c in codec[:1] for n in names if n not in ("random", c)]
    rows = []
    counts = {"train": a.train, "test": a.test}
    classes = a.ft_classes.split(",")
    shards = {pan: prepare_data(a.out, pan, counts, a.pan_speed, classes) for pan in (True, False)}
    for seed in ft_seeds:  # seeds outermost: a cut run leaves whole seeds
      for pan in (True, False):
        for name in names:
          rows.append(
            finetune_one(a.out, shards[pan], pan, name, a.ft_keep, seed, a.steps, classes)
          )
    result["finetune"] = rows
    report += [
      "",
      f"## fine-tuning top-1 (keep {a.ft_keep:.0%}, {a.steps} steps)",
      "",
      finetune_table(rows),
      "",
      "Paired per seed:",
      "",
      finetune_paired(rows, [(n, "random") for n in names[1:]] + codec_vs),
    ]
  text = "\n".join(report) + "\n"
  print(text)
  with open(os.path.join(a.out, "report.md"), "w") as f:
    f.write(text)
  return result


if __name__ == "__main__":
  main()
