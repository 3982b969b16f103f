"""python train.py --config configs/finetune.py:runlocal --workdir /tmp/mgvm/finetune --config.init_from=/tmp/mgvm/pretrain

VideoMAE fine-tuning (docs/algorithms.md §1.6): mean pooling + fc_norm + head, AdamW (0.9, 0.999),
weight decay 0.05, layer-wise LR decay 0.75, warmup from 0 then cosine to min_lr, drop path
0.1, label smoothing 0.1, mixup 0.8 / cutmix 1.0, random-resized crop, RandAugment
rand-m7-n4-mstd0.5-inc1 (the same ops for all frames), random erasing p 0.25, repeated
augmentation (2 clips per decoded video). `init_from` is a pre-training workdir whose latest
`params` initialise the encoder, or a released `.pth` / Hugging Face directory (empty: from
scratch).

Arguments after the colon: `runlocal` shrinks everything to a CPU-size run on the built-in
synthetic motion data set; `study` is `runlocal` on the masking study's data and tubelets for 1,000 steps
(`configs/pretrain.py:study`'s twin); `dataset=k400|ucf101|hmdb51|ssv2` sets that data set's temporal
sampling, flip and test views (dense clips, flip, 5 clips x 3 crops; HMDB51 every 2nd frame
and 10 x 3, as EVEREST's scripts; SSv2: segments, no flip, 2 x 3); `recipe=NAME` a paper's
whole recipe (configs/recipes.py, docs/reproduce.md); `compress=mgtc|everest|rlt` runs the encoder on the tokens a motion-guided compressor keeps,
in training and test (ratio 0.25 / 0.4 dropped; rlt: RLT's rule, every token whose change
exceeds `threshold` 0.1, a count per clip padded to the budget `int((1 - ratio)·N)`, ratio 0:
all N; `--config.masking.motion=codec` scores codec motion, which needs
`--config.data.rand_augment=""`);
`fps_scale=2` takes twice the frames at twice the rate with MGTC keeping half the tokens (the
same encoder token count as the unscaled config), e.g. `--config configs/finetune.py:dataset=ssv2 --config.data.source=tfrecord
--config.data.dir=DIR --config.num_classes=174`. Evaluate with
`python eval.py --config configs/finetune.py:runlocal --workdir DIR` (top-1/top-5 with
softmax averaged over clips x crops).
"""

import ml_collections

from configs import common
from mgvm.config import parse_arg


def get_config(arg=None):
  spec = dict(runlocal=False, study=False, dataset="", compress="", fps_scale=1, recipe="")
  args = parse_arg(arg, **spec)
  recipe = common.recipe_args(args, spec, "finetune")
  c = ml_collections.ConfigDict()
  c.task = "finetune"
  c.seed = 0
  c.init_from = ""
  c.num_classes = 0  # 0: from the data set (the synthetic set knows its classes)
  c.model = common.model("B", drop_path_rate=0.1)
  c.num_frames = 16
  c.image_size = 224
  c.data = common.data(rand_augment="rand-m7-n4-mstd0.5-inc1", random_erase=0.25, num_sample=2)
  c.batch_size = 512  # clips per step (num_sample of them per video)
  c.optim = common.optim(base_lr=1e-3, min_lr=1e-6, warmup_steps=2_500, b2=0.999, layer_decay=0.75)
  c.label_smoothing = 0.1
  c.mixup = ml_collections.ConfigDict(
    dict(enabled=True, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
  )
  # "" = every token; a compressor (mgtc / everest / rlt) keeps the high-motion tokens only
  if args.compress == "rlt":  # RLT's own rule: a threshold, no cap on the kept count
    c.masking = common.compressor("rlt", 0.0, form="threshold")
  elif args.compress:
    c.masking = common.compressor(
      args.compress, {"mgtc": 0.25, "everest": 0.4}.get(args.compress, 0)
    )
  else:
    c.masking = ml_collections.ConfigDict(dict(kind=""))
  c.mesh = common.mesh()
  c.eval = common.evaluation(num_clips=5, num_crops=3)
  common.run(c, total_steps=50_000)
  if args.dataset:
    common.apply_dataset(c, args.dataset)
  if args.runlocal or args.study:
    c.model.update(size="", dim=96, depth=4, num_heads=3, drop_path_rate=0.0, dtype="float32")
    common.runlocal_data(c)
    c.batch_size = 16
    c.optim.update(base_lr=0.016, min_lr=0.005, warmup_steps=100, layer_decay=1.0)  # 1e-3 → 3e-4
    c.mixup.enabled = False
    c.data.update(rand_augment="", random_erase=0.0, num_sample=1)
    c.label_smoothing = 0.0
    common.run(c, total_steps=2000, log_every_steps=50, checkpoint_every_steps=500)
    c.eval.update(split="test", batch_size=16, num_clips=2, num_crops=1)
  if args.study:
    common.study_data(c)
    # 1,000 steps: where pre-training's gain over scratch exceeds the seed spread (at 2,000
    # scratch has caught up; docs/masking_study.md)
    c.optim.warmup_steps = 83
    common.run(c, total_steps=1000, log_every_steps=50, checkpoint_every_steps=500)
  if args.fps_scale > 1:
    if args.compress:
      raise ValueError("fps_scale sets its own MGTC compressor; drop compress=")
    common.trade_fps_for_tokens(c, args.fps_scale)
  return common.apply_recipe(c, recipe)
