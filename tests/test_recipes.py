"""The recipes of `configs/recipes.py` against the official scripts.

`OFFICIAL` is written from the official scripts and argument defaults independently of
`configs/recipes.py`, in the scripts' own terms (per-GPU videos x GPUs, the `--lr` before the
batch scaling, `--epochs`, SlowFast's total batch and absolute LRs, ...). Each test builds the
config as a user gets it (`configs/<task>.py:recipe=NAME`) and converts mgvm's conventions back:
videos per step = `batch_size // data.num_sample`, LR = `base_lr x videos / 256`, epochs ->
steps as the references count them, and the whole LR table against a re-implementation of the
reference schedulers. Config building only: no model is built.
"""

import math

import numpy as np
import pytest

from configs import detect, finetune, pretrain, recipes
from mgvm.data import device_ops
from mgvm.train import durations, optim

VIDEOMAE = "MCG-NJU/VideoMAE"
MGMAE = "MCG-NJU/MGMAE"
EVEREST = "sunilhoho/EVEREST"
EVAD = "MCG-NJU/EVAD"

# MCG-NJU/VideoMAE:run_mae_pretraining.py argument defaults (MGMAE's run_mgmae_pretraining.py and
# EVEREST's run_ms_pretraining.py have the same ones), plus what every script passes
# (--decoder_depth 4, --num_frames 16, --opt adamw, --opt_betas 0.9 0.95).
PT_DEFAULTS = dict(
  model="base",
  lr=1.5e-4,
  min_lr=1e-5,
  warmup_epochs=40,
  weight_decay=0.05,
  opt_betas=(0.9, 0.95),
  opt_eps=1e-8,
  clip_grad=None,
  drop_path=0.0,
  decoder_depth=4,
  num_frames=16,
  input_size=224,
  num_sample=1,
  nodes=1,
)
# MCG-NJU/VideoMAE:run_class_finetuning.py argument defaults (MGMAE and EVEREST keep them, except
# EVEREST's --mixup 0 --cutmix 0 and MGMAE's --test_num_segment 10; every script passes
# --test_num_segment), plus what every script passes (--opt_betas 0.9 0.999 --weight_decay 0.05
# --num_frames 16 --input_size 224 --short_side_size 224).
FT_DEFAULTS = dict(
  model="base",
  lr=1e-3,
  min_lr=1e-6,
  warmup_epochs=5,
  layer_decay=0.75,
  drop_path=0.1,
  fc_drop_rate=0.0,
  weight_decay=0.05,
  opt_betas=(0.9, 0.999),
  opt_eps=1e-8,
  clip_grad=None,
  smoothing=0.1,
  mixup=0.8,
  cutmix=1.0,
  mixup_prob=1.0,
  mixup_switch_prob=0.5,
  aa="rand-m7-n4-mstd0.5-inc1",
  reprob=0.25,
  num_sample=2,
  sampling_rate=4,
  test_num_crop=3,
  num_frames=16,
  input_size=224,
  short_side_size=224,
  data_set="Kinetics-400",
  mcm=False,
  nodes=1,
)
# MCG-NJU/EVAD: slowfast/config/defaults.py, projects/evad/models/config.py and
# slowfast/models/optimizer.py (AdamW betas fixed at (0.9, 0.999)), plus what every
# projects/evad/configs/*.yaml sets.
EVAD_DEFAULTS = dict(
  NUM_GPUS=8,
  NUM_FRAMES=16,
  SAMPLING_RATE=4,
  MIN_SIZE_TRAIN=288,
  MIN_SIZE_TEST=288,
  MEAN=(0.45, 0.45, 0.45),
  STD=(0.225, 0.225, 0.225),
  RANDOM_FLIP=True,
  NUM_CLASSES=80,
  LR_POLICY="steps_with_relative_lrs",
  STEPS=(0, 5, 8),
  LRS=(1, 0.1, 0.01),
  LR_SCALE=8.0,
  MAX_EPOCH=12,
  WEIGHT_DECAY=1e-4,
  WARMUP_EPOCHS=2.0,
  WARMUP_START_LR=2.5e-6,
  BETAS=(0.9, 0.999),
  LAYER_DECAY=1.0,
  ENHANCED_WEIGHT=1,
  ROI_EXTENSION=(0.4, 0.2),
  NUM_PROPOSALS=100,
  NUM_STAGES=6,  # MODEL.SparseRCNN.NUM_HEADS
  PERSON_THRESHOLD=0.7,
  ACTION_WEIGHT=12.0,
  CRD_DROP_PATH_RATE=0.1,
  # ava_action_list_v2.2_for_activitynet_2019.pbtxt (the v2.1 list in the repository holds the
  # same 60 ids)
  EVAL_CLASSES=(
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36,
    37, 38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66,
    67, 68, 69, 70, 72, 73, 74, 76, 77, 78, 79, 80,
  ),
)  # fmt: skip
_KTP_B = (1, 1, 1, 0.7, 1, 1, 0.7, 1, 1, 0.7, 1, 1)
_EVAD_B = dict(
  EMBED_DIM=768,
  DEPTH=12,
  TRAIN_BATCH_SIZE=16,
  BASE_LR=2.5e-5,
  DROP_PATH_RATE=0.1,
  FPN_INDICES=(2, 5, 8, 11),
  CRD=(384, 6, 6),  # EMBED_DIM, DEPTH, NUM_HEADS
)

_K = "scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_"
_S = "scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_"
_U = "scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/"

OFFICIAL = {
  "pretrain": {
    "videomae_k400_b_800e": dict(
      PT_DEFAULTS,
      script=f"{VIDEOMAE}:{_K}800/pretrain.sh",
      nodes=8, gpus=8, batch_size=32, epochs=801, sampling_rate=4, mask_type="tube",
      mask_ratio=0.9,
    ),
    "videomae_k400_b_1600e": dict(
      PT_DEFAULTS,
      script=f"{VIDEOMAE}:{_K}1600/pretrain.sh",
      nodes=8, gpus=8, batch_size=32, epochs=1601, sampling_rate=4, mask_type="tube",
      mask_ratio=0.9,
    ),
    "videomae_ssv2_b_800e": dict(
      PT_DEFAULTS,
      script=f"{VIDEOMAE}:{_S}800/pretrain.sh",
      nodes=8, gpus=8, batch_size=32, epochs=801, sampling_rate=2, mask_type="tube",
      mask_ratio=0.9,
    ),
    "videomae_ssv2_b_2400e": dict(
      PT_DEFAULTS,
      script=f"{VIDEOMAE}:{_S}2400/pretrain.sh",
      nodes=8, gpus=8, batch_size=32, epochs=2401, sampling_rate=2, mask_type="tube",
      mask_ratio=0.9,
    ),
    "videomae_ucf101_b_3200e": dict(
      PT_DEFAULTS,
      script=f"{VIDEOMAE}:{_U}pretrain.sh",
      gpus=8, batch_size=24, lr=3e-4, epochs=3201, sampling_rate=4, mask_type="tube",
      mask_ratio=0.75,
    ),
    "mgmae_k400_b_800e": dict(
      PT_DEFAULTS,
      script=f"{MGMAE}:scripts/mgmae/vit_b_k400_mgmae.sh",
      gpus=16, batch_size=24, num_sample=4, lr=1e-3, warmup_epochs=20, epochs=200,
      sampling_rate=4, mask_type="mgmae", mask_ratio=0.9, init_mask_map="mix_gauss",
      base_frame="middle", hole_filling="consist", topk_on_all=False, gauss_method="max",
    ),
    "mgmae_ssv2_b_800e": dict(
      PT_DEFAULTS,
      script=f"{MGMAE}:scripts/mgmae/vit_b_ssv2_mgmae.sh",
      gpus=16, batch_size=24, num_sample=4, lr=1e-3, warmup_epochs=20, epochs=200,
      sampling_rate=2, mask_type="mgmae", mask_ratio=0.9, init_mask_map="mix_gauss",
      base_frame="middle", hole_filling="consist", topk_on_all=False, gauss_method="max",
    ),
    "everest_ucf101_b_3200e": dict(
      PT_DEFAULTS,
      script=f"{EVEREST}:scripts/ucf101/pretrain.sh",
      gpus=8, batch_size=24, lr=1e-3, epochs=3200, sampling_rate=4, mask_type="motion-centric",
      motion_centric_masking_ratio=0.7, mask_ratio=0.9,
    ),
    "everest_hmdb51_b_4800e": dict(
      PT_DEFAULTS,
      script=f"{EVEREST}:scripts/hmdb51/pretrain.sh",
      gpus=8, batch_size=24, lr=1e-3, epochs=4800, sampling_rate=2, mask_type="motion-centric",
      motion_centric_masking_ratio=0.7, mask_ratio=0.9,
    ),
  },
  "finetune": {
    "videomae_k400_b_800e": dict(
      FT_DEFAULTS,
      script=f"{VIDEOMAE}:{_K}800/finetune.sh",
      nodes=8, gpus=8, batch_size=8, num_sample=1, lr=1e-3, epochs=100, sampling_rate=4,
      test_num_segment=5,
    ),
    "videomae_k400_b_1600e": dict(
      FT_DEFAULTS,
      script=f"{VIDEOMAE}:{_K}1600/finetune.sh",
      nodes=8, gpus=8, batch_size=6, num_sample=2, lr=5e-4, epochs=75, sampling_rate=4,
      test_num_segment=5,
    ),
    "videomae_ssv2_b_800e": dict(
      FT_DEFAULTS,
      script=f"{VIDEOMAE}:{_S}800/finetune.sh",
      nodes=8, gpus=8, batch_size=8, num_sample=1, lr=5e-4, epochs=50, data_set="SSV2",
      test_num_segment=2,
    ),
    "videomae_ssv2_b_2400e": dict(
      FT_DEFAULTS,
      script=f"{VIDEOMAE}:{_S}2400/finetune.sh",
      nodes=8, gpus=8, batch_size=6, num_sample=2, lr=5e-4, epochs=30, data_set="SSV2",
      test_num_segment=2,
    ),
    "videomae_ucf101_b_3200e": dict(
      FT_DEFAULTS,
      script=f"{VIDEOMAE}:{_U}finetune.sh",
      gpus=8, batch_size=16, num_sample=2, lr=5e-4, min_lr=1e-5, layer_decay=0.7, epochs=100,
      fc_drop_rate=0.5, drop_path=0.2, sampling_rate=4, test_num_segment=5, data_set="UCF101",
    ),
    "mgmae_k400_b_800e": dict(
      FT_DEFAULTS,
      script=f"{MGMAE}:scripts/finetune/vit_b_k400_ft.sh",
      gpus=32, batch_size=16, lr=7e-4, layer_decay=0.75, epochs=90, sampling_rate=4,
      test_num_segment=5,
    ),
    "mgmae_ssv2_b_800e": dict(
      FT_DEFAULTS,
      script=f"{MGMAE}:scripts/finetune/vit_b_ssv2_ft.sh",
      gpus=16, batch_size=16, num_sample=2, lr=2e-3, layer_decay=0.65, epochs=25,
      data_set="SSV2", test_num_segment=2,
    ),
    "everest_ucf101_b_3200e": dict(
      FT_DEFAULTS,
      script=f"{EVEREST}:scripts/ucf101/finetune.sh",
      gpus=8, batch_size=16, num_sample=1, lr=1e-3, epochs=100, sampling_rate=4,
      test_num_segment=5, data_set="UCF101", mcm=True, mcm_ratio=0.4, mixup=0.0, cutmix=0.0,
    ),
    "everest_hmdb51_b_4800e": dict(
      FT_DEFAULTS,
      script=f"{EVEREST}:scripts/hmdb51/finetune.sh",
      gpus=8, batch_size=16, num_sample=1, lr=1e-3, epochs=50, sampling_rate=2,
      test_num_segment=10, data_set="HMDB51", mcm=True, mcm_ratio=0.4, mixup=0.0, cutmix=0.0,
    ),
  },
  "detect": {
    "evad_ava_b": dict(
      EVAD_DEFAULTS, **_EVAD_B,
      script=f"{EVAD}:projects/evad/configs/ViT_B_16x4_KTP.yaml",
      KEEP_RATES=_KTP_B,
    ),
    "evad_ava_b_keep1": dict(
      EVAD_DEFAULTS, **_EVAD_B,
      script=f"{EVAD}:projects/evad/configs/ViT_B_16x4.yaml",
      KEEP_RATES=(1,) * 12,
    ),
    "evad_ava_b_ew4": dict(
      EVAD_DEFAULTS, **_EVAD_B,
      script=f"{EVAD}:projects/evad/configs/ViT_B_16x4_KTP_EW.yaml",
      KEEP_RATES=tuple(0.6 if r < 1 else 1 for r in _KTP_B), ENHANCED_WEIGHT=4,
    ),
    "evad_ava_l": dict(
      EVAD_DEFAULTS,
      script=f"{EVAD}:projects/evad/configs/ViT_L_16x4_KTP.yaml",
      EMBED_DIM=1024, DEPTH=24, TRAIN_BATCH_SIZE=8, BASE_LR=1e-5, DROP_PATH_RATE=0.2,
      FPN_INDICES=(5, 11, 17, 23), CRD=(512, 12, 8), ACTION_WEIGHT=6.0,
      KEEP_RATES=tuple(0.7 if i in (6, 12, 18) else 1 for i in range(24)),
    ),
  },
}  # fmt: skip

CONFIGS = {"pretrain": pretrain, "finetune": finetune, "detect": detect}
SIZES = {"base": "B", 768: "B", 1024: "L"}
# The reference's det_head (8x LR) in mgvm's EVAD param paths, and what stays at 1x: the FPN and
# the proposals (top-level attributes of the reference model) and the backbone.
DET_HEAD_PATHS = (
  "localizer/heads/0/self_attn/in_proj/kernel",
  "localizer/heads/5/bboxes_delta/bias",
  "decoder_embed/kernel",
  "mask_token",
  "decoder_blocks/0/attn/qkv/kernel",
  "decoder_blocks/5/norm2/scale",
  "action_heads/0/out/kernel",
  "action_heads/5/layers/0/kernel",
)
OTHER_PATHS = (
  "encoder/patch_embed/proj/kernel",
  "encoder/blocks/0/attn/qkv/kernel",
  "encoder/norm/scale",
  "localizer/fpn/lateral/0/kernel",
  "localizer/fpn/output/3/bias",
  "localizer/proposal_boxes",
  "localizer/proposal_features",
)

CASES = [(task, name) for task in OFFICIAL for name in OFFICIAL[task]]


def build(task, name):
  return CONFIGS[task].get_config(f"recipe={name}")


def videos_per_step(o):
  return o["nodes"] * o["gpus"] * o["batch_size"] if "gpus" in o else o["TRAIN_BATCH_SIZE"]


def approx(x):
  return pytest.approx(x, rel=1e-9, abs=0)


def videomae_cosine_table(peak, end, epochs, per_epoch, warmup_epochs):
  """`utils.cosine_scheduler` of VideoMAE / MGMAE / EVEREST (warmup from 0: the scripts never
  pass `start_warmup_value`)."""
  warmup_iters = warmup_epochs * per_epoch
  warm = np.linspace(0, peak, warmup_iters)
  iters = np.arange(epochs * per_epoch - warmup_iters)
  cos = end + 0.5 * (peak - end) * (1 + np.cos(np.pi * iters / len(iters)))
  return np.concatenate((warm, cos))


def slowfast_table(o, per_epoch):
  """`lr_policy.get_lr_at_epoch` at every iteration (`cur_epoch + cur_iter / data_size`)."""

  def relative(cur_epoch):
    steps = list(o["STEPS"]) + [o["MAX_EPOCH"]]
    ind = next(i for i, s in enumerate(steps) if cur_epoch < s) - 1
    return o["LRS"][ind] * o["BASE_LR"]

  out = []
  for it in range(o["MAX_EPOCH"] * per_epoch):
    cur_epoch = it / per_epoch
    lr = relative(cur_epoch)
    if cur_epoch < o["WARMUP_EPOCHS"]:
      start, stop = o["WARMUP_START_LR"], relative(o["WARMUP_EPOCHS"])
      lr = cur_epoch * (stop - start) / o["WARMUP_EPOCHS"] + start
    out.append(lr)
  return np.asarray(out)


SAMPLES = 512  # steps evaluated per table: one array shape, so the schedule's ops compile once


def sample_steps(total, warmup):
  """Every warmup step and its neighbours, 300 steps spread over the run, the last two; padded
  with the last step to `SAMPLES` entries."""
  picked = set(range(min(total, warmup + 3))) | {total - 2, total - 1}
  picked |= {int(s) for s in np.linspace(0, total - 1, 300).round()}
  steps = sorted(picked)
  assert len(steps) <= SAMPLES
  return np.asarray(steps + [steps[-1]] * (SAMPLES - len(steps)))


def mgvm_table(c, num_train_videos):
  """(resolved config, steps, the LR mgvm's schedule gives at those steps)."""
  r = durations.resolve(c, num_train_videos)
  fn = optim.lr_schedule(
    base_lr=r.optim.base_lr,
    min_lr=r.optim.min_lr,
    global_batch_size=optim.lr_batch_size(r),
    warmup_steps=r.optim.warmup_steps,
    total_steps=r.total_steps,
    warmup_from=r.optim.warmup_from,
    schedule=r.optim.schedule,
    decay_steps=r.optim.decay_steps,
    decay_factor=r.optim.decay_factor,
  )
  steps = sample_steps(r.total_steps, r.optim.warmup_steps)
  return r, steps, np.asarray(fn(steps), np.float64)


def test_every_recipe_has_an_official_entry_and_back():
  for task in ("pretrain", "finetune", "detect"):
    assert set(recipes.RECIPES[task]) == set(OFFICIAL[task]), task


@pytest.mark.parametrize("task,name", CASES)
def test_recipe_names_its_script_and_source(task, name):
  r = recipes.RECIPES[task][name]
  assert r["script"] == OFFICIAL[task][name]["script"]
  for key in ("paper", "headline", "hardware"):
    assert r[key], key
  assert set(r) <= {"args", "set", "script", "paper", "headline", "hardware", "notes"}


@pytest.mark.parametrize("name", sorted(OFFICIAL["pretrain"]))
def test_pretrain_recipe_is_the_official_script(name):
  o, c = OFFICIAL["pretrain"][name], build("pretrain", name)
  videos = videos_per_step(o)
  assert c.data.num_sample == o["num_sample"]
  assert c.batch_size == videos * o["num_sample"]  # mgvm counts clips
  assert optim.lr_batch_size(c) == videos  # the LR scales with videos, as the reference's
  assert c.optim.base_lr * videos / 256 == approx(o["lr"] * videos / 256)
  assert c.optim.min_lr * videos / 256 == approx(o["min_lr"] * videos / 256)
  assert (c.optim.schedule, c.optim.warmup_from, c.optim.layer_decay) == ("cosine", 0.0, 1.0)
  assert (c.total_epochs, c.total_steps) == (o["epochs"], 0)
  assert (c.optim.warmup_epochs, c.optim.warmup_steps) == (o["warmup_epochs"], 0)
  assert (c.optim.b1, c.optim.b2) == o["opt_betas"] and c.optim.eps == o["opt_eps"]
  assert c.optim.weight_decay == o["weight_decay"]
  assert c.optim.clip_grad_norm == (o["clip_grad"] or 0.0)
  assert c.model.size == SIZES[o["model"]]
  assert c.model.decoder_depth == o["decoder_depth"]
  assert c.model.drop_path_rate == o["drop_path"]
  assert (c.num_frames, c.image_size) == (o["num_frames"], o["input_size"])
  assert (c.data.temporal, c.data.target_fps) == ("dense", 0)
  assert c.data.frame_stride == o["sampling_rate"]
  assert c.masking.ratio == o["mask_ratio"]
  if o["mask_type"] == "motion-centric":  # EVEREST: random masking among the kept tokens
    assert c.masking.kind == "random"
    assert c.masking.compress.kind == "everest"
    assert c.masking.compress.ratio == o["motion_centric_masking_ratio"]
  else:
    assert c.masking.kind == o["mask_type"]
    assert "compress" not in c.masking
  if o["mask_type"] == "mgmae":
    m = c.masking
    assert (m.init, m.base_frame, m.hole_filling) == (
      o["init_mask_map"],
      o["base_frame"],
      o["hole_filling"],
    )
    assert (m.topk_on_all, m.gauss_mix) == (o["topk_on_all"], o["gauss_method"])


@pytest.mark.parametrize("name", sorted(OFFICIAL["finetune"]))
def test_finetune_recipe_is_the_official_script(name):
  o, c = OFFICIAL["finetune"][name], build("finetune", name)
  videos = videos_per_step(o)
  assert c.data.num_sample == o["num_sample"]
  assert c.batch_size == videos * o["num_sample"]
  assert optim.lr_batch_size(c) == videos
  assert c.optim.base_lr * videos / 256 == approx(o["lr"] * videos / 256)
  assert c.optim.min_lr * videos / 256 == approx(o["min_lr"] * videos / 256)
  assert (c.optim.schedule, c.optim.warmup_from) == ("cosine", 0.0)
  assert (c.total_epochs, c.total_steps) == (o["epochs"], 0)
  assert (c.optim.warmup_epochs, c.optim.warmup_steps) == (o["warmup_epochs"], 0)
  assert c.optim.layer_decay == o["layer_decay"]
  assert (c.optim.b1, c.optim.b2) == o["opt_betas"] and c.optim.eps == o["opt_eps"]
  assert c.optim.weight_decay == o["weight_decay"]
  assert c.optim.clip_grad_norm == (o["clip_grad"] or 0.0)
  assert c.model.size == SIZES[o["model"]]
  assert c.model.drop_path_rate == o["drop_path"]
  assert c.model.fc_drop_rate == o["fc_drop_rate"]
  assert c.label_smoothing == o["smoothing"]
  mixing = o["mixup"] > 0 or o["cutmix"] > 0  # timm's Mixup is active only then
  assert c.mixup.enabled == mixing
  if mixing:
    assert (c.mixup.mixup_alpha, c.mixup.cutmix_alpha) == (o["mixup"], o["cutmix"])
    assert (c.mixup.prob, c.mixup.switch_prob) == (o["mixup_prob"], o["mixup_switch_prob"])
  assert c.data.rand_augment == o["aa"]
  assert c.data.random_erase == o["reprob"]
  assert tuple(c.data.crop_scale) == (0.08, 1.0)
  assert (c.num_frames, c.image_size) == (o["num_frames"], o["input_size"])
  assert o["short_side_size"] == o["input_size"]  # test views: short side -> image_size
  assert (c.eval.num_clips, c.eval.num_crops) == (o["test_num_segment"], o["test_num_crop"])
  assert c.data.target_fps == 0
  if o["data_set"] == "SSV2":  # segment sampling, no flip
    assert (c.data.temporal, c.data.flip) == ("segment", False)
  else:
    assert (c.data.temporal, c.data.flip) == ("dense", True)
    assert c.data.frame_stride == o["sampling_rate"]
  if o["mcm"]:  # EVEREST: keep the top 60% tokens by motion, in training and test
    assert (c.masking.kind, c.masking.ratio) == ("everest", o["mcm_ratio"])
  else:
    assert c.masking.kind == ""


@pytest.mark.parametrize("name", sorted(OFFICIAL["detect"]))
def test_detect_recipe_is_the_official_config(name):
  o, c = OFFICIAL["detect"][name], build("detect", name)
  batch = o["TRAIN_BATCH_SIZE"]  # SlowFast: the total over NUM_GPUS
  assert (c.batch_size, c.data.num_sample) == (batch, 1)
  assert batch % o["NUM_GPUS"] == 0
  assert optim.lr_batch_size(c) == batch
  # SlowFast does not scale LRs with the batch: mgvm's per-256 values times batch / 256
  assert c.optim.base_lr * batch / 256 == approx(o["BASE_LR"])
  assert c.optim.warmup_from * batch / 256 == approx(o["WARMUP_START_LR"])
  assert o["LR_POLICY"] == "steps_with_relative_lrs" and c.optim.schedule == "step"
  assert tuple(c.optim.decay_epochs) == tuple(o["STEPS"][1:]) and tuple(c.optim.decay_steps) == ()
  for k, rel in enumerate(o["LRS"]):
    assert c.optim.decay_factor**k == pytest.approx(rel)
  assert (c.optim.warmup_epochs, c.optim.warmup_steps) == (o["WARMUP_EPOCHS"], 0)
  assert (c.total_epochs, c.total_steps) == (o["MAX_EPOCH"], 0)
  assert c.optim.weight_decay == o["WEIGHT_DECAY"]
  assert (c.optim.b1, c.optim.b2) == o["BETAS"]
  assert c.optim.layer_decay == o["LAYER_DECAY"]
  rules = optim.multiplier_rules(c.optim.lr_multipliers)
  for path in DET_HEAD_PATHS:
    assert optim.multiplier_of(path, rules) == o["LR_SCALE"], path
  for path in OTHER_PATHS:
    assert optim.multiplier_of(path, rules) == 1.0, path
  assert c.model.size == SIZES[o["EMBED_DIM"]]
  assert c.model.drop_path_rate == o["DROP_PATH_RATE"]
  pruned = {i: r for i, r in enumerate(o["KEEP_RATES"]) if r < 1}
  assert len(o["KEEP_RATES"]) == o["DEPTH"]
  if pruned:
    assert tuple(c.evad.prune_blocks) == tuple(pruned)
    assert {c.evad.keep_rate} == set(pruned.values())
  else:
    assert c.evad.keep_rate >= 1.0
  assert c.evad.enhanced_weight == o["ENHANCED_WEIGHT"]
  assert tuple(c.evad.feature_blocks) == o["FPN_INDICES"]
  assert (c.evad.decoder_dim, c.evad.decoder_depth, c.evad.decoder_heads) == o["CRD"]
  assert c.evad.decoder_drop_path_rate == o["CRD_DROP_PATH_RATE"]
  assert tuple(c.evad.roi_extension) == o["ROI_EXTENSION"]
  assert c.evad.num_proposals == o["NUM_PROPOSALS"]
  assert c.evad.num_stages == o["NUM_STAGES"]
  assert c.evad.person_threshold == o["PERSON_THRESHOLD"]
  assert c.evad.loss_weights.action_weight == o["ACTION_WEIGHT"]
  assert c.num_frames == o["NUM_FRAMES"]
  assert (c.data.target_fps, c.data.frame_stride) == (0, o["SAMPLING_RATE"])
  assert o["MIN_SIZE_TRAIN"] == o["MIN_SIZE_TEST"] == min(c.image_size)
  assert c.data.resize == "short_side"
  assert tuple(c.model.pos_grid) == (14, 14)  # the 224-px table, interpolated
  assert device_ops.NORMALIZATIONS[c.data.normalization] == (o["MEAN"], o["STD"])
  assert c.data.flip == o["RANDOM_FLIP"]
  # the reference's output k is AVA action k + 1 (`label - 1`); mgvm stores AVA's 1-based ids
  assert c.num_classes == o["NUM_CLASSES"] and c.data.label_offset == 1
  assert tuple(sorted(c.eval.class_ids)) == o["EVAL_CLASSES"]
  assert c.eval.frame_order == "input"


# Epochs -> steps and the whole LR table against the reference schedulers, on a small training
# set: N videos, `len(dataset) // total_batch_size` steps per epoch (the references drop the last
# partial batch).
@pytest.mark.parametrize("task,name", [c for c in CASES if c[0] != "detect"])
def test_lr_table_is_the_reference_cosine_scheduler(task, name):
  o, c = OFFICIAL[task][name], build(task, name)
  videos = videos_per_step(o)
  n = 2 * videos + videos // 3  # 2 steps per epoch, a partial batch dropped
  r, steps, table = mgvm_table(c, n)
  per_epoch = n // videos
  assert per_epoch == 2
  assert r.total_steps == o["epochs"] * per_epoch
  assert r.optim.warmup_steps == o["warmup_epochs"] * per_epoch
  scale = videos / 256  # the reference multiplies lr and min_lr by total_batch_size / 256
  ref = videomae_cosine_table(
    o["lr"] * scale, o["min_lr"] * scale, o["epochs"], per_epoch, o["warmup_epochs"]
  )
  # float32 arithmetic in mgvm's schedule: compare to the peak's precision
  np.testing.assert_allclose(table, ref[steps], rtol=1e-6, atol=1e-6 * ref.max())


@pytest.mark.parametrize("name", sorted(OFFICIAL["detect"]))
def test_lr_table_is_slowfasts_steps_with_warmup(name):
  o, c = OFFICIAL["detect"][name], build("detect", name)
  n = 10 * o["TRAIN_BATCH_SIZE"] + 3  # keyframes; 10 iterations per epoch
  r, steps, table = mgvm_table(c, n)
  assert r.total_steps == o["MAX_EPOCH"] * 10
  assert tuple(r.optim.decay_steps) == tuple(10 * s for s in o["STEPS"][1:])
  ref = slowfast_table(o, per_epoch=10)
  np.testing.assert_allclose(table, ref[steps], rtol=1e-6, atol=1e-6 * ref.max())
  assert math.isclose(table.max(), o["BASE_LR"], rel_tol=1e-6)
