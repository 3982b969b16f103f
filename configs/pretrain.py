"""python train.py --config configs/pretrain.py:runlocal --workdir /tmp/mgvm/pretrain

VideoMAE pre-training: tube masking 0.9, normalized-pixel targets, AdamW (0.9, 0.95), base LR
1.5e-4 x global batch / 256, linear warmup from 0 then cosine (docs/algorithms.md §1.4), multi-scale
crop, clips of 16 frames at `data.target_fps`.

Arguments after the colon: `runlocal` shrinks everything to a CPU-size run on the built-in
synthetic motion data set; `study` is `runlocal` in the masking study's regime, where
pre-training learns on a CPU (32-px grating-background clips, 2 x 8 x 8 tubelets, 24,000 steps;
`configs/common.study_data`, docs/masking_study.md); `masker=random|tube|running_cell|mgmae|mgm` picks the masker (mgm
and `--config.masking.flow=codec` of mgmae read the codec motion field the input pipeline then
loads; the synthetic set is then written with it, docs/synthetic.md); `compress=mgtc|everest|rlt` first drops low-motion tokens (neither encoded nor
reconstructed; mgtc drops 25 %, everest 70 % as EVEREST with `masker=random`, rlt 30 % by
RLT's static-token score; `--config.masking.compress.motion=codec` scores codec motion instead);
`fps_scale=2` takes twice the frames at twice the rate, MGTC drops half and the masking ratio
rises so the encoder sees as many tokens as unscaled;
`dataset=k400|ucf101|hmdb51|ssv2` samples as VideoMAE does there (every 4th frame; SSv2 and
HMDB51 (EVEREST's scripts) every 2nd); `recipe=NAME` a paper's whole recipe (configs/recipes.py,
docs/reproduce.md), e.g. `--config configs/pretrain.py:dataset=k400 --config.data.source=tfrecord
--config.data.dir=DIR`.
Evaluate with `python eval.py --config configs/pretrain.py:runlocal --workdir DIR`
(masked reconstruction loss and PSNR on held-out clips).
"""

import ml_collections

from configs import common
from mgvm.config import parse_arg


def get_config(arg=None):
  spec = dict(
    runlocal=False, study=False, masker="tube", dataset="", compress="", fps_scale=1, recipe=""
  )
  args = parse_arg(arg, **spec)
  recipe = common.recipe_args(args, spec, "pretrain")
  c = ml_collections.ConfigDict()
  c.task = "pretrain"
  c.seed = 0
  c.model = common.model("B")
  c.num_frames = 16
  c.image_size = 224
  c.data = common.data()
  c.masking = common.masking(args.masker, ratio=0.9)  # every option of the masker, settable
  if args.masker == "running_cell":
    c.masking.decoder_ratio = 0.5
  if args.compress:
    c.masking.compress = common.compressor(
      args.compress, {"mgtc": 0.25, "everest": 0.7, "rlt": 0.3}.get(args.compress, 0)
    )
  c.batch_size = 256  # global; the LR scales with it
  c.optim = common.optim()
  c.mesh = common.mesh()
  c.eval = common.evaluation()
  common.run(c, total_steps=100_000)
  if args.dataset:
    common.apply_dataset(c, args.dataset)
  if args.runlocal or args.study:
    c.model.update(
      size="",
      dim=96,
      depth=4,
      num_heads=3,
      decoder_dim=64,
      decoder_depth=1,
      decoder_heads=2,
      dtype="float32",
    )
    common.runlocal_data(c)
    c.masking.ratio = 0.75
    c.batch_size = 16
    c.optim.update(base_lr=0.05, min_lr=1e-3, warmup_steps=30)  # x 16/256: peak 3.1e-3
    common.run(c, total_steps=300, log_every_steps=25, checkpoint_every_steps=100)
    c.eval.update(batch_size=16, max_batches=4)
  if args.study:
    common.study_data(c)
    c.optim.warmup_steps = 500
    common.run(c, total_steps=24_000, log_every_steps=500, checkpoint_every_steps=4000)
  if args.fps_scale > 1:
    if args.compress:
      raise ValueError("fps_scale sets its own MGTC compressor; drop compress=")
    common.trade_fps_for_tokens(c, args.fps_scale)
  return common.apply_recipe(c, recipe)
