"""Config blocks shared by `configs/pretrain.py` and `configs/finetune.py`.

Not a config itself: every runnable config file has `get_config(arg)` and a docstring that
starts with the command that runs it.
"""

import dataclasses

import ml_collections


def model(size="B", **overrides):
  """The ViT encoder (and, for pre-training, the MAE decoder); 0 / "" means "from the size"."""
  c = ml_collections.ConfigDict(
    dict(
      size=size,
      dim=0,
      depth=0,
      num_heads=0,
      decoder_dim=0,
      decoder_depth=0,
      decoder_heads=0,
      tubelet=(2, 16, 16),  # (frames, height, width) of one token
      drop_path_rate=0.0,
      fc_drop_rate=0.0,
      dtype="bfloat16",
      attention="auto",  # the attention kernel (mgvm.models.vit; "auto": the backend's best)
      remat="none",  # activation rematerialisation per block: none | full | dots
      # () = a 1-D sinusoid table for the actual token count; (gh, gw) = the spatial grid the
      # table is laid out for (VideoMAE's 224²: (14, 14)), bicubically interpolated per slice
      # to the actual grid (EVAD; docs/evad.md).
      pos_grid=(),
      pos_embed="sinusoid",  # or "learned": a trained table (classifier / MAE; docs/models.md)
      encoder_norm=True,  # MAE: the encoder's final LayerNorm (False: HF use_mean_pooling=True)
    )
  )
  c.update(overrides)
  return c


def synthetic(**overrides):
  """The built-in synthetic motion data set (`mgvm.datasets.synthetic`), generated on first use:
  every field of its `SyntheticConfig` at the default (defined there, once), the split sizes
  `num_train` / `num_val` / `num_test` of `DEFAULT_SPLITS`, the `seed` and `videos_per_shard`
  (every host of a multi-host run needs a shard of each split). Importing these loads no
  TensorFlow."""
  from mgvm.datasets.synthetic.config import DEFAULT_SPLITS, VIDEOS_PER_SHARD, SyntheticConfig

  fields = dataclasses.asdict(SyntheticConfig())
  counts = {f"num_{split}": count for split, count in DEFAULT_SPLITS.items()}
  c = ml_collections.ConfigDict(dict(**fields, **counts, seed=0, videos_per_shard=VIDEOS_PER_SHARD))
  c.update(overrides)
  return c


def study_data(c):
  """`runlocal_data`'s clips at 32 px in 2 x 8 x 8 tubelets over grating backgrounds: the masking
  study's regime, where pre-training learns on a CPU (issue #19, docs/masking_study.md).

  On `runlocal`'s noise-blend backgrounds the normalized-pixel targets of most patches are JPEG
  rounding (a patch divided by its own tiny spread), so the MAE loss stays at the mean-prediction
  plateau (~0.99) whatever it trains; gratings give every patch a pattern its neighbours continue
  (docs/synthetic.md).
  """
  runlocal_data(c)
  c.image_size = 32
  c.model.tubelet = (2, 8, 8)
  c.data.synthetic.update(image_size=32, background_detail=0.0, background_pattern="gratings")
  return c


def runlocal_data(c):
  """The CPU-size clips and synthetic set both runlocal configs share (made once, ~30 s).

  A ViT trained from scratch sits on a loss plateau until it learns to compare frames; on the
  default synthetic set (small, slow motion over detailed backgrounds) that takes far longer
  than a CPU demo has. This preset makes the motion large (short 1.2-1.6 s videos that one
  8-frame clip at 6 fps spans, fast actors, no distractors, a smoother background), so the
  plateau ends after a few hundred steps (docs/training.md has the measurements).
  """
  c.num_frames = 8
  c.image_size = 64
  c.data.target_fps = 6.0
  c.data.synthetic.update(
    min_seconds=1.2,
    max_seconds=1.6,
    min_fps=10.0,
    max_fps=30.0,
    max_distractors=0,
    object_size=(0.2, 0.3),
    speed=(0.3, 0.5),
    rotation_speed=(0.3, 0.6),
    scale_rate=(0.4, 0.7),
    background_detail=0.3,
    num_train=3000,
    num_val=300,
    num_test=300,
  )
  c.data.shuffle_buffer = 512
  c.data.crop_scale = (1.0, 1.0)  # whole frame: at 64 px a crop changes the apparent speed and
  # size (the classes' signal) and slowed learning ~2x
  return c


def data(**overrides):
  """Where clips come from and how they are sampled.

  `source="synthetic"` generates (once) and reads the built-in data set under `dir`
  (default `$MGVM_DATA_DIR`, else `~/.cache/mgvm`); `source="tfrecord"` reads the shards
  `dir/{split}-*.tfrecord` of a prepared data set. Frames are picked at `target_fps`
  (stride = source fps / target fps); `target_fps=0` uses the fixed `frame_stride`.
  `target_fps` may be a list: training draws one rate per clip (FPS augmentation), evaluation
  uses the first. `temporal="segment"` takes one frame per segment of the whole video instead
  (SSv2's sampling; the rate is then ignored).
  `flip` is off because the synthetic classes (and SSv2's) are direction-sensitive: a mirrored
  "move left" is "move right". Turn it on for Kinetics-like data. `crop_scale` is the area
  range of fine-tuning's random-resized crop; `rand_augment` ("" off, VideoMAE:
  "rand-m7-n4-mstd0.5-inc1") and `random_erase` (probability, VideoMAE: 0.25) are fine-tuning
  only; `num_sample` > 1 is repeated augmentation (clips per decoded video, counted in the batch).
  `threads`: the input pipeline's thread pool (0: one per core); it changes speed, not data.
  `host_independent_batches`: every host reads every shard and decodes only its slice of each
  global batch, so the global batches do not depend on the number of hosts (docs/scale.md);
  off, each host reads its own shards (less I/O).
  `source="tfds"` reads a data set built by a `mgvm.datasets.builders` builder: `tfds_name`
  (e.g. "mgvm_ucf101/split1") under `dir` (the tfds data_dir).
  """
  c = ml_collections.ConfigDict(
    dict(
      source="synthetic",
      dir="",
      tfds_name="",
      train_split="train",
      target_fps=ml_collections.FieldReference(8.0, field_type=object),
      frame_stride=4,
      temporal="dense",
      shuffle_buffer=1024,
      flip=False,
      crop_scale=(0.08, 1.0),
      rand_augment="",
      random_erase=0.0,
      num_sample=1,
      threads=0,
      host_independent_batches=False,
      num_train_videos=0,  # videos in the training split, for *_epochs (0: the source's count)
      normalization="imagenet",  # imagenet | kinetics (0.45 / 0.225, SlowFast/EVAD's)
      frame_selection="",  # "" off | segment | global: most changing tubelet pairs (experimental)
      frame_selection_window=2,  # sample this many times the clip's frames, keep num_frames of them
      synthetic=synthetic(),
    )
  )
  c.update(overrides)
  return c


# Per-data-set sampling, augmentation and test views (docs/algorithms.md §1.5-1.7). K400 and
# UCF101 (VideoMAE's scripts): "dense" clips every 4th frame with flip, 5x3 test views. HMDB51
# (EVEREST's scripts, the only published HMDB51 recipe; VideoMAE has none): every 2nd frame in
# pre-training and fine-tuning, flip, 10x3 test views. SSv2: one frame per segment, no flip
# (direction-sensitive classes), 2x3 test views, pre-training every 2nd frame. Pre-training
# takes dense clips every `pretrain_stride` frames and never flips.
DATASETS = {
  "k400": dict(temporal="dense", frame_stride=4, pretrain_stride=4, flip=True, clips=5, crops=3),
  "ucf101": dict(temporal="dense", frame_stride=4, pretrain_stride=4, flip=True, clips=5, crops=3),
  "hmdb51": dict(temporal="dense", frame_stride=2, pretrain_stride=2, flip=True, clips=10, crops=3),
  "ssv2": dict(temporal="segment", frame_stride=2, pretrain_stride=2, flip=False, clips=2, crops=3),
}


def apply_dataset(c, name: str):
  """Sets `c.data` sampling / flip and `c.eval` views of a named data set (`DATASETS`).

  The reference samples by frame count, not by rate, so `target_fps` is set to 0.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
  d = DATASETS[name]
  if c.task == "pretrain":
    c.data.update(temporal="dense", target_fps=0, frame_stride=d["pretrain_stride"])
  else:
    c.data.update(
      temporal=d["temporal"], target_fps=0, frame_stride=d["frame_stride"], flip=d["flip"]
    )
    c.eval.update(num_clips=d["clips"], num_crops=d["crops"])
  return c


def masking(kind: str, **overrides):
  """The masker `kind` (`mgvm.masking.BUILDERS`) with every option its builder accepts, at the
  builder's default, so each one can be set from the command line (the config is locked), e.g.
  `--config.masking.base_frame=random` for MGMAE; then `overrides`."""
  import inspect

  from mgvm import masking as masking_lib

  if kind not in masking_lib.BUILDERS:
    raise ValueError(f"unknown masker {kind!r}; known: {', '.join(sorted(masking_lib.BUILDERS))}")
  options = {
    name: default
    for name, default in masking_lib.accepted_keys(kind).items()
    if default is not inspect.Parameter.empty
  }
  c = ml_collections.ConfigDict(dict(kind=kind, **options))
  c.update(overrides)
  return c


def compressor(kind: str, ratio: float, **overrides):
  """A motion-guided compressor's config (`mgvm.masking.COMPRESSORS`) with all its keys, then
  `overrides`.

  `mgtc`: drop the `ratio` lowest pixel-change tokens (L1 per tubelet against the previous
  slice; first slice kept whole). `everest`: drop the `ratio` lowest patch-embedding changes.
  `rlt`: RLT's static-token score; `form="topk"` drops the `ratio` lowest, `form="threshold"`
  keeps every token changing by more than `threshold` (a count per clip, at most
  `int((1 - ratio)·N)`; ratio 0: no cap). Each takes `motion="codec"` (scores = the codec
  motion's magnitude, `compensate_camera` "" | "median" | "affine"; default "pixels").
  `random_drop`: keep `int((1 - ratio)·N)` uniformly drawn tokens (the baseline at the same K).
  """
  codec = dict(motion="pixels", compensate_camera="")
  if kind == "mgtc":
    keys = dict(kind="mgtc", ratio=ratio, metric="l1", sub_blocks=1, first="keep", **codec)
  elif kind == "everest":
    keys = dict(kind="everest", ratio=ratio, **codec)
  elif kind == "rlt":
    keys = dict(kind="rlt", ratio=ratio, form="topk", threshold=0.1, **codec)
  elif kind == "random_drop":
    keys = dict(kind="random_drop", ratio=ratio)
  else:
    raise ValueError(f"unknown compressor {kind!r}; known: everest, mgtc, random_drop, rlt")
  c = ml_collections.ConfigDict(keys)
  c.update(overrides)
  return c


def trade_fps_for_tokens(c, scale: int):
  """`scale`× the frames at `scale`× the rate, MGTC dropping `1 - 1/scale` of the tokens.

  The encoder sees as many tokens as the unscaled config (MGTC's claim: a higher FPS at the same
  compute). Fine-tuning: the compressor keeps `N / scale` tokens. Pre-training: MGTC drops the
  same share and the masking ratio rises so the visible count stays.
  """
  if int(scale) != scale or scale < 2:
    raise ValueError(f"fps_scale must be an integer >= 2, got {scale}")
  c.num_frames *= scale
  fps = c.data.target_fps
  if isinstance(fps, (list, tuple)):
    c.data.target_fps = tuple(f * scale for f in fps)
  elif fps:
    c.data.target_fps = fps * scale
  else:  # a fixed frame stride: a smaller stride is the higher rate
    if c.data.frame_stride % scale:
      raise ValueError(
        f"fps_scale={scale} needs target_fps, or a frame_stride divisible by it "
        f"(got {c.data.frame_stride})"
      )
    c.data.frame_stride //= scale
  drop = 1.0 - 1.0 / scale
  if c.task == "pretrain":
    c.masking.ratio = 1.0 - (1.0 - c.masking.ratio) / scale
    c.masking.compress = compressor("mgtc", drop)
  else:
    c.masking = compressor("mgtc", drop)
  return c


def optim(**overrides):
  """AdamW (no decay on 1-D params, biases, mask token, position tables) with warmup + cosine."""
  c = ml_collections.ConfigDict(
    dict(
      base_lr=1.5e-4,  # scaled by the global batch size / 256
      min_lr=1e-5,  # likewise scaled
      warmup_steps=5_000,
      warmup_epochs=0,  # set one of warmup_steps / warmup_epochs (the other 0)
      warmup_from=0.0,  # the LR at step 0, per 256 like base_lr (EVAD: 2.5e-6 at batch 16)
      schedule="cosine",  # cosine | step (x decay_factor at each of decay_steps / decay_epochs)
      decay_steps=(),
      decay_epochs=(),
      decay_factor=0.1,
      lr_scale_by="videos",  # lr x batch/256 counts videos (the references) or clips (num_sample)
      weight_decay=0.05,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      layer_decay=1.0,  # 1.0 = off; fine-tuning uses 0.75
      clip_grad_norm=0.0,
    )
  )  # 0 = off
  c.update(overrides)
  return c


def mesh(**overrides):
  """Devices on the `data` axis (-1: all) and on the `fsdp` axis (params and optimizer state
  sharded over it; 1: replicated)."""
  c = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  c.update(overrides)
  return c


def evaluation(**overrides):
  """What `eval.py` measures (multi-view for classifiers; fixed masking key for pre-training)."""
  c = ml_collections.ConfigDict(
    dict(split="val", batch_size=32, num_clips=1, num_crops=1, max_batches=0)
  )  # 0 = the whole split
  c.update(overrides)
  return c


def run(c, *, total_steps, log_every_steps=100, checkpoint_every_steps=1000, keep_checkpoints=3):
  """Durations, logging and checkpointing fields every training config has."""
  c.total_steps = total_steps
  c.total_epochs = 0  # set one of total_steps / total_epochs (the other 0); docs/training.md
  c.log_every_steps = log_every_steps
  c.checkpoint_every_steps = checkpoint_every_steps
  c.keep_checkpoints = keep_checkpoints
  c.tensorboard = True
  c.accum_steps = 1  # micro-batches per update: batch_size is the effective (global) batch
  c.allow_config_change = False  # resume a workdir whose recorded config.json differs (logged)
  # The step train.py resumes from and eval.py reads: 0 = the newest intact one (a damaged newer
  # step is reported and passed over); N = exactly step N (a damaged step N stops the run).
  # Steps newer than the one resumed from are moved to checkpoints.set_aside/, never deleted.
  c.restore_step = 0
  return c


def short_run(c, *, seed: int, steps: int):
  """`c` as one short run of a study (benchmarks/masking_study.py, codec_motion.py): `seed`,
  `steps` steps, warmup at most a tenth of them, one checkpoint at the end, no TensorBoard."""
  c.seed = seed
  c.total_steps = steps
  c.optim.warmup_steps = min(c.optim.warmup_steps, steps // 10)
  c.checkpoint_every_steps = steps
  c.tensorboard = False
  return c


def recipe_args(args, spec: dict, task: str) -> dict | None:
  """The recipe `args.recipe` names (`configs.recipes.RECIPES[task]`), with the config arguments
  it fixes (dataset, masker, ...) written into `args`. An argument given on the command line
  that contradicts the recipe fails, as does `runlocal` (a recipe is the paper's full size)."""
  if not args.recipe:
    return None
  from configs import recipes

  table = recipes.RECIPES[task]
  if args.recipe not in table:
    raise ValueError(f"unknown {task} recipe {args.recipe!r}; known: {', '.join(sorted(table))}")
  recipe = table[args.recipe]
  if getattr(args, "runlocal", False):
    raise ValueError(
      f"recipe={args.recipe} is a full-size recipe; it cannot be combined with runlocal"
    )
  for name, value in recipe.get("args", {}).items():
    given = getattr(args, name)
    if given != spec[name] and given != value:
      raise ValueError(
        f"recipe={args.recipe} sets {name}={value!r}; the argument {name}={given!r} contradicts it"
      )
    setattr(args, name, value)
  return recipe


def apply_recipe(c, recipe: dict | None):
  """Sets each dotted key of `recipe["set"]` in `c`; a key the config lacks fails, naming it."""
  if recipe is None:
    return c
  for dotted, value in recipe["set"].items():
    *parents, leaf = dotted.split(".")
    node = c
    for part in parents:
      if part not in node:
        raise ValueError(f"recipe sets {dotted!r}, but the config has no {part!r} there")
      node = node[part]
    if leaf not in node:
      raise ValueError(f"recipe sets {dotted!r}, but the config has no such key")
    node[leaf] = value
  return c
