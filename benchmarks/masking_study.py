"""The masking study (issue #19, docs/masking_study.md): pre-training maskers, token compressors
against random dropping at the same K, and MGTC's frame-rate claim, in the study regime.

  python benchmarks/masking_study.py --out /tmp/mgvm/masking_study [--parts maskers,compressors,fps]
      [--seeds 0,1,2] [--maskers random,tube,...] [--compressors mgtc,everest,rlt,...]
      [--keeps 0.25,0.5,0.75] [--pretrain-steps 24000] [--finetune-steps 1000] [--img DIR]
      [--raft-weights X.npz] [--quick] [--cached-only]

The regime is `configs/pretrain.py:study` / `configs/finetune.py:study` (32-px grating clips,
2 x 8 x 8 tubelets: 64 tokens per clip), where the masked loss falls well below the
mean-prediction plateau. Each seed changes the model init, the data order and the masks.
- `maskers`: pre-train with each masker (`MASKERS`) for `--pretrain-steps`, fine-tune on every
  token for `--finetune-steps`, test top-1 (300 test videos, 2 clips); `scratch` fine-tunes the
  same steps from a random init. Each is compared with scratch and with random masking; each
  pre-training's loss curve is kept.
- `compressors`: fine-tune from the seed's tube pre-training with a compressor (`COMPRESSORS`)
  keeping K = int(keep x 64) tokens in training and test, each against `random` (random_drop)
  at the same K and seed.
Arms on the codec's motion vectors (`mgmae_codec`, `mgtc_codec`, `rlt_codec`) read the synthetic
set written once more with the H.264 motion field (same frames; docs/synthetic.md).
- `fps`: at a fixed encoder budget of 64 tokens, 8 frames at 6 fps (every token) against 16
  frames at 12 fps with MGTC, or random dropping, keeping 64 of 128.
Each run's result is cached in OUT/runs/<arm>-s<seed>-<config hash>/result.json, so a rerun
adds only what is new and a changed setting makes a new run; `--cached-only` trains nothing
and reports the finished runs, listing the others. OUT/results.json and OUT/study.md hold the
tables, `--img` (default OUT) the plots. Several processes may share one OUT (one per core
is faster on CPU, docs/masking_study.md): each skips the runs another is training and lists
them; a last `--cached-only` call reports everything. `--quick`: one seed, a few steps on a
tiny synthetic set, for the test suite.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import study_runs  # noqa: E402

# name -> (configs/pretrain.py:study arguments, masking overrides); "scratch": no pre-training
MASKERS = {
  "scratch": None,
  "random": ("masker=random", {}),
  "tube": ("masker=tube", {}),
  "running_cell": ("masker=running_cell", {}),
  "mgmae_lk": ("masker=mgmae", {"flow": "lk"}),
  # the codec's motion vectors (H.264 of the rendered frames, 8-px cells: the synthetic set is
  # written once more with the field, same frames; docs/synthetic.md)
  "mgmae_codec": ("masker=mgmae", {"flow": "codec"}),
  "mgmae_raft": ("masker=mgmae", {"flow": "raft_small"}),  # needs --raft-weights
  # EVEREST: random masking among the tokens its compressor keeps; it keeps half (its default
  # 70 % drop would leave 3 targets of 64), and every masker shows 16 of the 64 tokens
  "everest": ("masker=random,compress=everest", {"compress": {"ratio": 0.5}}),
  "tube+mgtc": ("masker=tube,compress=mgtc", {}),
}
NEEDS_RAFT = ("mgmae_raft",)
# name -> (configs.common.compressor kind, overrides); "random" is the baseline at the same K
COMPRESSORS = {
  "random": ("random_drop", {}),
  "mgtc": ("mgtc", {}),
  "everest": ("everest", {}),
  "rlt": ("rlt", {"form": "topk"}),  # equal K: RLT's score, the top K kept
  # the same scores on the codec's motion vectors instead of pixels (no camera motion here, so
  # no compensation)
  "mgtc_codec": ("mgtc", {"motion": "codec"}),
  "rlt_codec": ("rlt", {"form": "topk", "motion": "codec"}),
}
FPS_SETTINGS = {
  "fps1_all": "8 frames @ 6 fps, all 64 tokens",
  "fps2_mgtc": "16 frames @ 12 fps, MGTC keeps 64 of 128",
  "fps2_random": "16 frames @ 12 fps, random keeps 64 of 128",
}
PARTS = ("maskers", "compressors", "fps")
# A pre-training saves a checkpoint this often, so a study process stopped mid-run resumes it
# (the cadence may change on resume, `mgvm.workdir.RESUME_MAY_CHANGE`, so it is not part of the
# run's name: runs cached before it was set are reused).
CHECKPOINT_EVERY = 2000
TOKENS = 64  # per clip in the study regime: a 4 x 4 x 4 grid of 2 x 8 x 8 tubelets


def _toy(config):
  """`--quick`: a tiny synthetic set, model (1 block of width 32) and batch on one device (the
  study's clips otherwise)."""
  config.model.update(dim=32, depth=1, num_heads=2)
  if config.model.decoder_depth:
    config.model.update(decoder_dim=16, decoder_heads=2)
  config.data.synthetic.update(num_train=16, num_val=2, num_test=4)
  config.data.shuffle_buffer = 16
  config.batch_size = 4
  config.eval.batch_size = 4
  config.mesh.data = 1  # one device, whatever the host has
  return config


def pretrain_config(masker: str, seed: int, steps: int, quick: bool, raft_weights: str = ""):
  from configs import common, pretrain

  arg, overrides = MASKERS[masker]
  config = pretrain.get_config(f"study,{arg}")
  config.masking.update(overrides)  # nested dicts merge into the masker's blocks
  if masker in NEEDS_RAFT:
    config.masking.flow_weights = raft_weights
  config = common.short_run(config, seed=seed, steps=steps)
  config.log_every_steps = max(1, min(config.log_every_steps, steps // 24))
  return _toy(config) if quick else config


def finetune_config(
  seed: int, steps: int, init: str, quick: bool, *, compress=None, fps_scale: int = 1
):
  """`configs/finetune.py:study` from `init` ("" = scratch); `compress` = (name, keep) or None."""
  from configs import common, finetune

  config = finetune.get_config("study" + (f",fps_scale={fps_scale}" if fps_scale > 1 else ""))
  config.init_from = init
  if compress is not None:
    name, keep = compress
    kind, overrides = COMPRESSORS[name]
    config.masking = common.compressor(kind, round(1 - keep, 6), **overrides)
  config = common.short_run(config, seed=seed, steps=steps)
  config.optim.warmup_steps = steps // 12
  return _toy(config) if quick else config


class NotRun(Exception):
  """`--cached-only` met a run that has not finished."""


class Study:
  """Runs (or reuses) every run a part needs; `a` holds the command-line settings. With
  `a.cached_only` nothing trains: runs not finished yet are listed in `self.missing`. A run
  another study process is training is skipped and listed in `self.busy`."""

  def __init__(self, a):
    self.a = a
    self.runs = os.path.join(a.out, "runs")
    self.missing: list[str] = []
    self.busy: list[str] = []
    self.pretrained: dict[tuple[str, int], dict] = {}  # (masker, seed) -> its result

  def each(self, fn, *args, **kw):
    """`fn(*args, **kw)`, or None when it is a run not done yet (recorded in `self.missing`) or
    one another process holds (in `self.busy`; so are the runs that start from it)."""
    try:
      return fn(*args, **kw)
    except (NotRun, study_runs.RunBusy) as e:
      names = self.missing if isinstance(e, NotRun) else self.busy
      name = os.path.basename(str(e))
      if name not in names:  # a pre-training many fine-tunings start from is listed once
        names.append(name)
    return None

  def _require_finished(self, workdir: str) -> None:
    """With `--cached-only`, `NotRun` for a run whose result is not saved yet."""
    if self.a.cached_only and study_runs.load(os.path.join(workdir, "result.json")) is None:
      raise NotRun(workdir)

  def pretrain(self, masker: str, seed: int) -> dict:
    """Pre-trains `masker` (cached); its workdir, final loss and loss curve."""
    if (masker, seed) not in self.pretrained:
      self.pretrained[masker, seed] = self._pretrain(masker, seed)
    return self.pretrained[masker, seed]

  def _pretrain(self, masker: str, seed: int) -> dict:
    a = self.a
    config = pretrain_config(masker, seed, a.pretrain_steps, a.quick, a.raft_weights)
    workdir = os.path.join(self.runs, study_runs.run_name(f"pre-{masker}-s{seed}", config))
    self._require_finished(workdir)

    def compute():
      from mgvm.run import train as train_run

      run = copy.deepcopy(config)
      run.checkpoint_every_steps = min(run.total_steps, CHECKPOINT_EVERY)
      train_run.train(run, workdir, log=lambda _: None)
      curve = []
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
          m = json.loads(line)
          if "loss" in m and m.get("split", "train") == "train":
            curve.append((m["step"], m["loss"]))
      return {
        "workdir": workdir,
        "masker": masker,
        "seed": seed,
        "loss": curve[-1][1],
        "curve": curve,
      }

    return study_runs.run_once(workdir, compute)

  def finetune(self, name: str, seed: int, init_masker: str | None, **kw) -> dict:
    """Fine-tunes from `init_masker`'s pre-training of `seed` (None: scratch) and tests."""
    a = self.a
    init = self.pretrain(init_masker, seed)["workdir"] if init_masker else ""
    config = finetune_config(seed, a.finetune_steps, init, a.quick, **kw)
    tag = study_runs.run_name(f"ft-{name}-{init_masker or 'scratch'}-s{seed}", config)
    row = {"name": name, "init": init_masker or "scratch", "seed": seed}
    workdir = os.path.join(self.runs, tag)
    self._require_finished(workdir)
    return study_runs.train_and_test(config, workdir, row)

  def maskers(self) -> dict:
    a = self.a
    rows, curves, skipped = [], {}, {}
    for masker in a.maskers:
      if masker in NEEDS_RAFT and not a.raft_weights:
        skipped[masker] = "needs --raft-weights (trained RAFT weights; none can be fetched here)"
        continue
      for seed in a.seeds:
        init = None if masker == "scratch" else masker
        row = self.each(self.finetune, masker, seed, init)
        if row is None:
          continue
        if init:
          pre = self.pretrain(masker, seed)
          row = dict(row, pretrain_loss=pre["loss"])
          curves.setdefault(masker, []).append(pre["curve"])
        rows.append(row)
    table = _by(rows, "name")
    for name, s in table.items():
      for other in ("scratch", "random"):
        s[f"vs_{other}"] = (
          study_runs.compare(s["runs"], table[other]["runs"])
          if other in table and name not in ("scratch", other)
          else ""
        )
      losses = [r["pretrain_loss"] for r in rows if r["name"] == name and "pretrain_loss" in r]
      s["pretrain_loss"] = study_runs.spread(losses) if losses else None
    return {"rows": rows, "table": table, "curves": curves, "skipped": skipped}

  def compressors(self) -> dict:
    a = self.a
    rows = []
    names = ["random"] + [c for c in a.compressors if c != "random"]
    for keep in a.keeps:
      for name in names:
        for seed in a.seeds:
          row = self.each(self.finetune, f"{name}-k{keep}", seed, "tube", compress=(name, keep))
          if row is not None:
            rows.append(dict(row, compressor=name, keep=keep, tokens=int(keep * TOKENS)))
    every = [self.each(self.finetune, "tube", seed, "tube") for seed in a.seeds]
    all_tokens = [r["top1"] for r in every if r is not None]
    table = []
    for keep in a.keeps:
      base = {
        r["seed"]: r["top1"] for r in rows if r["keep"] == keep and r["compressor"] == "random"
      }
      for name in names:
        mine = {r["seed"]: r["top1"] for r in rows if r["keep"] == keep and r["compressor"] == name}
        if not mine:
          continue
        s = study_runs.spread(mine[k] for k in sorted(mine))
        s.update(compressor=name, keep=keep, tokens=int(keep * TOKENS))
        paired = sorted(set(mine) & set(base))
        if name != "random" and paired:
          deltas = [mine[k] - base[k] for k in paired]
          s["delta_vs_random"] = study_runs.spread(deltas)
          s["vs_random"] = study_runs.compare(list(mine.values()), list(base.values()))
        table.append(s)
    return {
      "rows": rows,
      "table": table,
      "all_tokens": study_runs.spread(all_tokens) if all_tokens else None,
    }

  def fps(self) -> dict:
    rows = []
    arms = {
      "fps1_all": ("tube", {}),
      "fps2_mgtc": ("fps2_mgtc", {"fps_scale": 2}),
      "fps2_random": ("fps2_random", {"fps_scale": 2, "compress": ("random", 0.5)}),
    }
    for seed in self.a.seeds:
      for setting, (name, kw) in arms.items():
        row = self.each(self.finetune, name, seed, "tube", **kw)
        if row is not None:
          rows.append(dict(row, setting=setting))
    table = _by(rows, "setting")
    for name, s in table.items():
      s["setting"] = FPS_SETTINGS[name]
      if name != "fps1_all" and "fps1_all" in table:
        s["vs_fps1"] = study_runs.compare(s["runs"], table["fps1_all"]["runs"])
    return {"rows": rows, "table": table}


def _by(rows: list[dict], key: str) -> dict:
  """{rows[key]: study_runs.spread of their top-1, in seed order}."""
  groups = {}
  for r in sorted(rows, key=lambda r: r["seed"]):
    groups.setdefault(r[key], []).append(r["top1"])
  return {k: study_runs.spread(v) for k, v in groups.items()}


def _runs(s: dict) -> str:
  return ", ".join(f"{v:.3f}" for v in s["runs"])


def report(result: dict) -> str:
  """The study's tables as Markdown."""
  lines = []
  if "maskers" in result:
    m = result["maskers"]
    lines += [
      "| pre-training | final pre-training loss | test top-1, mean | spread | per seed "
      "| vs scratch | vs random masking |",
      "|---|---|---|---|---|---|---|",
    ]
    for name, s in m["table"].items():
      loss = s["pretrain_loss"]
      loss = f"{loss['mean']:.3f} ({loss['min']:.3f}–{loss['max']:.3f})" if loss else "—"
      lines.append(
        f"| {name} | {loss} | {s['mean']:.3f} | {s['spread']:.3f} | {_runs(s)} "
        f"| {s['vs_scratch'] or '—'} | {s['vs_random'] or '—'} |"
      )
    lines += [f"| {k} | not run: {why} | | | | | |" for k, why in m["skipped"].items()]
    lines.append("")
  if "compressors" in result:
    c = result["compressors"]
    lines += [
      "| keep (tokens) | compressor | test top-1, mean | spread | per seed "
      "| Δ vs random, mean (range) | vs random |",
      "|---|---|---|---|---|---|---|",
    ]
    for s in c["table"]:
      d = s.get("delta_vs_random")
      delta = f"{d['mean']:+.3f} ({d['min']:+.3f} to {d['max']:+.3f})" if d else "—"
      lines.append(
        f"| {s['keep']} ({s['tokens']}) | {s['compressor']} | {s['mean']:.3f} | "
        f"{s['spread']:.3f} | {_runs(s)} | {delta} | {s.get('vs_random', '—')} |"
      )
    a = c["all_tokens"]
    if a:
      lines.append(
        f"| 1.0 ({TOKENS}) | none | {a['mean']:.3f} | {a['spread']:.3f} | {_runs(a)} | — | — |"
      )
    lines.append("")
  if "fps" in result:
    lines += [
      "| fine-tuning input (encoder sees 64 tokens) | test top-1, mean | spread | per seed "
      "| vs 8 frames |",
      "|---|---|---|---|---|",
    ]
    for s in result["fps"]["table"].values():
      lines.append(
        f"| {s['setting']} | {s['mean']:.3f} | {s['spread']:.3f} | {_runs(s)} "
        f"| {s.get('vs_fps1', '—')} |"
      )
    lines.append("")
  return "\n".join(lines)


def plots(result: dict, folder: str) -> list[str]:
  """One PNG per table (and the pre-training loss curves) in `folder`; their paths."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  os.makedirs(folder, exist_ok=True)
  paths = []

  def finish(fig, ax, name: str, ylabel: str = "test top-1"):
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, name), dpi=110)
    plt.close(fig)
    paths.append(os.path.join(folder, name))

  def bars(table: dict, labels, name: str, title: str):
    fig, ax = plt.subplots(figsize=(1.2 * len(table) + 2, 3.2))
    for i, s in enumerate(table.values()):
      ax.bar(i, s["mean"], color="#4c72b0", alpha=0.6)
      ax.plot([i] * len(s["runs"]), s["runs"], "ko", ms=4)
    ax.set_xticks(range(len(table)), labels, rotation=20, ha="right")
    ax.axhline(1 / 15, color="grey", ls="--", lw=1, label="chance")
    ax.set_title(title, fontsize=9)
    finish(fig, ax, name)

  if "maskers" in result:
    m = result["maskers"]
    bars(
      m["table"],
      list(m["table"]),
      "masking_study_maskers.png",
      "pre-training masker, then fine-tuning on every token (bars: mean, dots: seeds)",
    )
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, curves in m["curves"].items():
      steps = np.array([s for s, _ in curves[0]])
      n = min(len(c) for c in curves)
      losses = np.array([[v for _, v in c[:n]] for c in curves])
      ax.plot(steps[:n], losses.mean(0), label=name)
      ax.fill_between(steps[:n], losses.min(0), losses.max(0), alpha=0.2)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="mean prediction")
    ax.set_xlabel("pre-training step")
    finish(fig, ax, "masking_study_pretrain_loss.png", "masked loss (train)")
  if "compressors" in result:
    c = result["compressors"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = list(dict.fromkeys(s["compressor"] for s in c["table"]))
    for j, name in enumerate(names):
      rows = [s for s in c["table"] if s["compressor"] == name]
      x = np.array([s["tokens"] for s in rows]) + (j - len(names) / 2) * 0.6
      y = np.array([s["mean"] for s in rows])
      err = np.array([[s["mean"] - s["min"] for s in rows], [s["max"] - s["mean"] for s in rows]])
      ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
    a = c["all_tokens"] or {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
    ax.errorbar(
      [TOKENS],
      [a["mean"]],
      yerr=[[a["mean"] - a["min"]], [a["max"] - a["mean"]]],
      marker="s",
      color="k",
      capsize=3,
      label=f"all {TOKENS} tokens",
    )
    ax.set_xlabel(f"tokens kept (K of {TOKENS}), training and test")
    finish(fig, ax, "masking_study_compressors.png")
  if "fps" in result:
    t = result["fps"]["table"]
    bars(
      t,
      [s["setting"].replace(", ", ",\n") for s in t.values()],
      "masking_study_fps.png",
      "a fixed budget of 64 encoder tokens per clip",
    )
  return paths


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True)
  p.add_argument("--parts", default=",".join(PARTS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--maskers", default=",".join(MASKERS))
  p.add_argument("--compressors", default=",".join(c for c in COMPRESSORS if c != "random"))
  p.add_argument("--keeps", default="0.25,0.5,0.75")
  p.add_argument("--pretrain-steps", type=int, default=24_000)
  p.add_argument("--finetune-steps", type=int, default=1000)
  p.add_argument("--raft-weights", default="", help="converted RAFT-small weights for mgmae_raft")
  p.add_argument("--img", default="", help="folder for the plots (default OUT)")
  p.add_argument("--quick", action="store_true", help="1 seed, 4 + 4 steps, a tiny data set")
  p.add_argument(
    "--cached-only", action="store_true", help="train nothing: report the finished runs"
  )
  a = p.parse_args(argv)
  a.parts = a.parts.split(",")
  a.seeds = [int(s) for s in a.seeds.split(",")]
  a.maskers = a.maskers.split(",")
  a.compressors = a.compressors.split(",")
  a.keeps = [float(k) for k in a.keeps.split(",")]
  for given, known, what in (
    (a.parts, PARTS, "parts"),
    (a.maskers, MASKERS, "maskers"),
    (a.compressors, COMPRESSORS, "compressors"),
  ):
    unknown = [x for x in given if x not in known]
    if unknown:
      p.error(f"unknown {what} {unknown}; known: {', '.join(known)}")
  bad = [k for k in a.keeps if not 0 < k < 1 or int(k * TOKENS) != k * TOKENS]
  if bad:
    p.error(f"--keeps {bad}: each must keep a whole number of the {TOKENS} tokens, 0 < keep < 1")
  if a.quick:
    a.seeds, a.pretrain_steps, a.finetune_steps = a.seeds[:1], 4, 4
  a.img = a.img or a.out
  return a


def main(argv=None) -> dict:
  a = parse(argv)
  os.makedirs(a.out, exist_ok=True)
  study = Study(a)
  result = {"args": {k: v for k, v in vars(a).items()}}
  for part in PARTS:
    if part in a.parts:
      result[part] = getattr(study, part)()
  result["missing"], result["busy"] = study.missing, study.busy
  text = report(result)
  if study.missing:
    text += f"Not run yet ({len(study.missing)}; --cached-only): {', '.join(study.missing)}\n"
  if study.busy:
    text += f"Skipped, another study process is training them: {', '.join(study.busy)}\n"
  study_runs.save(os.path.join(a.out, "results.json"), result)
  with open(os.path.join(a.out, "study.md"), "w") as f:
    f.write(text)
  print(text)
  result["plots"] = plots(result, a.img)
  return result


if __name__ == "__main__":
  main()
