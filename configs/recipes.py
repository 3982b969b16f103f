"""The official training recipes as presets: one argument gives a paper's recipe.

    python train.py --config configs/pretrain.py:recipe=videomae_k400_b_800e --workdir DIR \
        --config.data.source=tfrecord --config.data.dir=PREPARED_K400
    python train.py --config configs/finetune.py:recipe=videomae_k400_b_800e --workdir DIR2 \
        --config.data.source=tfrecord --config.data.dir=PREPARED_K400 --config.init_from=DIR
    python train.py --config configs/detect.py:recipe=evad_ava_b --workdir DIR3 ...

Not a config itself: `configs/{pretrain,finetune,detect}.py` read `RECIPES[task][NAME]` when
given `recipe=NAME` (`configs.common.recipe_args` / `apply_recipe`). Each entry holds

- `args`: the config file's own arguments the recipe fixes (pretrain: masker, dataset,
  compress; finetune: dataset, compress; detect: keep, ew);
- `set`: dotted config keys and their values, applied last (a key the config lacks fails);
- `script`: the official script or config the values come from (`owner/repo:path`, read at
  the commits `MCG-NJU/VideoMAE@14ef8d8`, `MCG-NJU/MGMAE@af7beb9`, `sunilhoho/EVEREST@8ebdd70`,
  `MCG-NJU/EVAD@0efdb7e`); values the script does not pass come from the argument defaults of
  the script's entry point (`run_mae_pretraining.py`, `run_class_finetuning.py`, ...) or, for
  EVAD, from `slowfast/config/defaults.py` and `projects/evad/models/config.py`;
- `hardware`: the machine the script is written for; `paper`; `headline`: the number the
  official model zoo reports for the model this recipe trains; `notes`: what differs, or what the
  official code leaves open.

mgvm's conventions, which the values follow:
- `batch_size` counts clips: videos per step x `data.num_sample` (repeated augmentation). The
  official scripts give per-GPU videos x GPUs (SlowFast / EVAD: the total clips per step).
- `optim.lr_scale_by="videos"`: the LR is `optim.base_lr x (batch_size / num_sample) / 256`, the
  references' rule, so `optim.base_lr` is the script's `--lr` unchanged. EVAD's SlowFast solver
  does not scale by the batch: its `BASE_LR` at batch B is `optim.base_lr = BASE_LR x 256 / B`
  here, likewise `WARMUP_START_LR` -> `optim.warmup_from`.
- Durations in epochs (`total_epochs`, `optim.warmup_epochs`, `optim.decay_epochs`; the `*_steps`
  keys 0): an epoch is `num_train_videos // videos per step` steps (mgvm/train/durations.py), the
  count coming from the prepared data set (or `--config.data.num_train_videos`).
- The VideoMAE pre-training scripts pass `--epochs 801` (1601, 2401, 3201): the cosine schedule
  runs over that many epochs, and the model the fine-tuning scripts load (`checkpoint-799.pth`,
  ...) is the one after 800 epochs. The recipes keep the scripts' count, so the LR table is the
  official one; the last epoch (at the minimum LR) is the one the released models did not train.

These recipes have not been run here (no data sets, no GPU); docs/reproduce.md has the commands.
"""

# The 60 AVA action ids evaluated by the AVA protocol (`ava_action_list_v2.2_for_activitynet_2019
# .pbtxt`; the same 60 as the v2.1 list in MCG-NJU/EVAD:slowfast/utils/ava_evaluation/). EVAD
# trains on all 80 and scores these 60. The ids are AVA's own (1-based), as `mgvm.datasets.prepare
# --boxes` stores them.
AVA_EVAL_CLASS_IDS = (
  1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36, 37,
  38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68,
  69, 70, 72, 73, 74, 76, 77, 78, 79, 80,
)  # fmt: skip

_REPO_VIDEOMAE = "MCG-NJU/VideoMAE"
_REPO_MGMAE = "MCG-NJU/MGMAE"
_REPO_EVEREST = "sunilhoho/EVEREST"
_REPO_EVAD = "MCG-NJU/EVAD"

VIDEOMAE_PAPER = "VideoMAE (Tong et al., NeurIPS 2022, arXiv:2203.12602)"
MGMAE_PAPER = "MGMAE (Huang et al., ICCV 2023, arXiv:2308.10794)"
EVEREST_PAPER = "EVEREST (Hwang et al., ICML 2024, arXiv:2211.10636)"
EVAD_PAPER = "EVAD (Chen et al., ICCV 2023, arXiv:2304.08451)"

# ---------------------------------------------------------------------------------------------
# Pre-training: what every VideoMAE-family script shares (run_mae_pretraining.py defaults and
# the flags each script passes: ViT-B, decoder depth 4, 16 frames at 224, AdamW (0.9, 0.95),
# weight decay 0.05, min LR 1e-5, warmup from 0 (the `--warmup_lr` flag never reaches
# `cosine_scheduler`), no drop path, no gradient clipping).
_PRETRAIN = {
  "model.size": "B",
  "model.decoder_depth": 4,
  "model.drop_path_rate": 0.0,
  "num_frames": 16,
  "image_size": 224,
  "data.temporal": "dense",
  "data.target_fps": 0,
  "data.num_sample": 1,
  "optim.base_lr": 1.5e-4,
  "optim.min_lr": 1e-5,
  "optim.warmup_from": 0.0,
  "optim.lr_scale_by": "videos",
  "optim.schedule": "cosine",
  "optim.weight_decay": 0.05,
  "optim.b1": 0.9,
  "optim.b2": 0.95,
  "optim.eps": 1e-8,
  "optim.layer_decay": 1.0,
  "optim.clip_grad_norm": 0.0,
  "optim.warmup_steps": 0,
  "optim.warmup_epochs": 40,
  "total_steps": 0,
}


def _pretrain(**overrides):
  return {**_PRETRAIN, **overrides}


# Fine-tuning: run_class_finetuning.py's defaults (VideoMAE's, which MGMAE and EVEREST keep except
# where noted): drop path 0.1, no head dropout, AdamW (0.9, 0.999), weight decay 0.05, layer decay
# 0.75, warmup 5 epochs from 0, cosine to min LR 1e-6, label smoothing 0.1, mixup 0.8 / cutmix
# 1.0 (prob 1, switch 0.5, batch mode), RandAugment rand-m7-n4-mstd0.5-inc1, random erasing 0.25,
# random-resized crop (0.08, 1), 16 frames at 224.
_FINETUNE = {
  "model.size": "B",
  "model.drop_path_rate": 0.1,
  "model.fc_drop_rate": 0.0,
  "num_frames": 16,
  "image_size": 224,
  "data.target_fps": 0,
  "data.rand_augment": "rand-m7-n4-mstd0.5-inc1",
  "data.random_erase": 0.25,
  "data.crop_scale": (0.08, 1.0),
  "label_smoothing": 0.1,
  "mixup.enabled": True,
  "mixup.mixup_alpha": 0.8,
  "mixup.cutmix_alpha": 1.0,
  "mixup.prob": 1.0,
  "mixup.switch_prob": 0.5,
  "optim.min_lr": 1e-6,
  "optim.warmup_from": 0.0,
  "optim.lr_scale_by": "videos",
  "optim.schedule": "cosine",
  "optim.weight_decay": 0.05,
  "optim.b1": 0.9,
  "optim.b2": 0.999,
  "optim.eps": 1e-8,
  "optim.layer_decay": 0.75,
  "optim.clip_grad_norm": 0.0,
  "optim.warmup_steps": 0,
  "optim.warmup_epochs": 5,
  "total_steps": 0,
}
# Sampling and test views per data set: dense clips (every `sampling_rate`-th frame) with flip and
# `test_num_segment` x 3 views; SSv2 one frame per segment, no flip, 2 x 3.
_DENSE = {"data.temporal": "dense", "data.flip": True, "eval.num_crops": 3}
_SSV2 = {
  "data.temporal": "segment",
  "data.flip": False,
  "eval.num_clips": 2,
  "eval.num_crops": 3,
}


def _finetune(**overrides):
  return {**_FINETUNE, **overrides}


# ---------------------------------------------------------------------------------------------
# EVAD (SlowFast solver): AdamW (0.9, 0.999), weight decay 1e-4, no layer decay, LR x0.1 at epochs
# 5 and 8 of 12 (`steps_with_relative_lrs`, LRS 1 / 0.1 / 0.01), linear warmup over 2 epochs from
# WARMUP_START_LR, 8x LR on `det_head`. `det_head` (projects/evad/models/video_model_builder.py)
# is `EVADRoIHead` (head_helper.py): the 6 Sparse R-CNN heads (`s0_headseries`), the context
# refinement decoder (`decoder.blocks`, each with its action MLP), `encoder_to_decoder` and
# `mask_token`; the FPN (`fpn_lateral*`, `fpn_output*`) and the proposal boxes / features are
# attributes of the top-level model and stay at 1x (slowfast/models/optimizer.py
# `get_parameter_groups`: `name.startswith('det_head.')`). In mgvm's EVAD those are
# `localizer/heads`, `decoder_blocks` + `action_heads`, `decoder_embed` and `mask_token`.
EVAD_DET_HEAD_8X = tuple(
  (name, 8.0)
  for name in ("localizer/heads", "decoder_embed", "mask_token", "decoder_blocks", "action_heads")
)


def _evad(*, size: str, batch: int, base_lr: float, warmup_start_lr: float, **overrides):
  """EVAD's AVA recipe at SlowFast's total batch `batch` (clips), `BASE_LR` and `WARMUP_START_LR`
  at that batch, converted to mgvm's per-256 values."""
  return {
    "model.size": size,
    "num_frames": 16,
    # AVA: short side 288 (MIN_SIZE_TRAIN / MIN_SIZE_TEST, long side <= 1333), aspect kept, no
    # crop (CROP_ENABLED False); 288 x 512 is AVA's 16:9 frame at that short side.
    "image_size": (288, 512),
    "data.resize": "short_side",
    "model.pos_grid": (14, 14),  # the 224-px sinusoid table, interpolated to the 18 x 32 grid
    "data.normalization": "kinetics",  # DATA.MEAN 0.45, DATA.STD 0.225
    "data.flip": True,  # DATA.RANDOM_FLIP (default True); no colour augmentation
    "data.target_fps": 0,
    "data.frame_stride": 4,  # DATA.SAMPLING_RATE on AVA's 30 fps frames
    "data.num_sample": 1,
    "batch_size": batch,
    # MODEL.NUM_CLASSES 80: all AVA actions are trained, output k = action id k + 1 (SlowFast's
    # `label - 1`); prepare stores AVA's action ids (1..80), hence the offset.
    "num_classes": 80,
    "data.label_offset": 1,
    "optim.base_lr": base_lr * 256 / batch,
    "optim.warmup_from": warmup_start_lr * 256 / batch,
    "optim.lr_scale_by": "videos",
    "optim.schedule": "step",
    "optim.decay_epochs": (5, 8),
    "optim.decay_steps": (),
    "optim.decay_factor": 0.1,
    "optim.warmup_epochs": 2,
    "optim.warmup_steps": 0,
    "total_epochs": 12,
    "total_steps": 0,
    "optim.weight_decay": 1e-4,
    "optim.b1": 0.9,
    "optim.b2": 0.999,
    "optim.layer_decay": 1.0,
    "optim.lr_multipliers": EVAD_DET_HEAD_8X,
    "evad.roi_extension": (0.4, 0.2),
    "evad.num_proposals": 100,
    "evad.num_stages": 6,
    "evad.person_threshold": 0.7,
    "evad.decoder_drop_path_rate": 0.1,
    # AVA protocol: frame-AP@0.5 over the 60 evaluated classes, detections taken in the input
    # order as SlowFast's port of the evaluator does (excluded timestamps and the label map are
    # files: --config.eval.excluded_timestamps=..., docs/reproduce.md).
    "eval.class_ids": AVA_EVAL_CLASS_IDS,
    "eval.frame_order": "input",
    **overrides,
  }


_EVAD_B = dict(
  size="B",
  batch=16,  # TRAIN.BATCH_SIZE (SlowFast's total over NUM_GPUS 8: 2 clips per GPU)
  base_lr=2.5e-5,  # SOLVER.BASE_LR ("default 0.000025 for BATCH=16")
  warmup_start_lr=2.5e-6,  # SOLVER.WARMUP_START_LR
)
_EVAD_B_MODEL = {
  "model.drop_path_rate": 0.1,  # ViT.DROP_PATH_RATE
  "evad.prune_blocks": (3, 6, 9),  # MODEL.KTP.KEEP_RATES: < 1 at blocks 3, 6, 9
  "evad.feature_blocks": (2, 5, 8, 11),  # ViT.FPN_INDICES
  "evad.decoder_dim": 384,  # MODEL.CRD: 384 wide, 6 deep, 6 heads
  "evad.decoder_depth": 6,
  "evad.decoder_heads": 6,
  "evad.loss_weights.action_weight": 12.0,  # MODEL.SparseRCNN.ACTION_WEIGHT default
}

# MCG-NJU/MGMAE:scripts/mgmae/vit_b_{k400,ssv2}_mgmae.sh: what both pre-training scripts set.
_MGMAE_PRETRAIN = {
  "batch_size": 1536,  # 16 GPUs x 24 videos x num_sample 4
  "data.num_sample": 4,
  "optim.base_lr": 1e-3,
  "masking.ratio": 0.9,
  "masking.init": "mix_gauss",
  "masking.gauss_mix": "max",
  "masking.base_frame": "middle",
  "masking.hole_filling": "consist",
  "masking.topk_on_all": False,
  "optim.warmup_epochs": 20,
  "total_epochs": 200,
}

RECIPES = {
  "pretrain": {
    "videomae_k400_b_800e": dict(
      args=dict(dataset="k400", masker="tube"),
      set=_pretrain(
        **{
          "batch_size": 2048,  # 64 GPUs x 32 videos
          "masking.ratio": 0.9,
          "data.frame_stride": 4,
          "total_epochs": 801,
        }
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="K400 top-1 80.0 (top-5 94.4) after finetune recipe videomae_k400_b_800e, 16x5x3 views (MODEL_ZOO.md)",
    ),
    "videomae_k400_b_1600e": dict(
      args=dict(dataset="k400", masker="tube"),
      set=_pretrain(
        **{
          "batch_size": 2048,
          "masking.ratio": 0.9,
          "data.frame_stride": 4,
          "total_epochs": 1601,
        }
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_1600/pretrain.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="K400 top-1 81.5 (top-5 95.1) after finetune recipe videomae_k400_b_1600e, 16x5x3 views (MODEL_ZOO.md)",
    ),
    "videomae_ssv2_b_800e": dict(
      args=dict(dataset="ssv2", masker="tube"),
      set=_pretrain(
        **{
          "batch_size": 2048,
          "masking.ratio": 0.9,
          "data.frame_stride": 2,
          "total_epochs": 801,
        }
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="SSv2 top-1 69.6 (top-5 92.0) after finetune recipe videomae_ssv2_b_800e, 16x2x3 views (MODEL_ZOO.md)",
    ),
    "videomae_ssv2_b_2400e": dict(
      args=dict(dataset="ssv2", masker="tube"),
      set=_pretrain(
        **{
          "batch_size": 2048,
          "masking.ratio": 0.9,
          "data.frame_stride": 2,
          "total_epochs": 2401,
        }
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_2400/pretrain.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="SSv2 top-1 70.8 (top-5 92.4) after finetune recipe videomae_ssv2_b_2400e, 16x2x3 views (MODEL_ZOO.md)",
    ),
    "videomae_ucf101_b_3200e": dict(
      args=dict(dataset="ucf101", masker="tube"),
      set=_pretrain(
        **{
          "batch_size": 192,  # 8 GPUs x 24 videos
          "optim.base_lr": 3e-4,
          "masking.ratio": 0.75,
          "data.frame_stride": 4,
          "total_epochs": 3201,
        }
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/pretrain.sh",
      hardware="8 GPUs (1 node)",
      paper=VIDEOMAE_PAPER,
      headline="UCF101 top-1 91.3 (top-5 98.5) after finetune recipe videomae_ucf101_b_3200e, 16x5x3 views (MODEL_ZOO.md)",
    ),
    "mgmae_k400_b_800e": dict(
      args=dict(dataset="k400", masker="mgmae"),
      set=_pretrain(
        **{
          **_MGMAE_PRETRAIN,
          "data.frame_stride": 4,
        }
      ),
      script=f"{_REPO_MGMAE}:scripts/mgmae/vit_b_k400_mgmae.sh",
      hardware="16 GPUs (2 nodes x 8, slurm)",
      paper=MGMAE_PAPER,
      headline="K400 top-1 81.2 (top-5 94.9) after finetune recipe mgmae_k400_b_800e, 16x5x3 views (docs/MODEL_ZOO.md)",
      notes=(
        "'800e' = 200 epochs x 4 clips per video (num_sample 4; the LR counts the 384 videos). "
        "The official masks come from RAFT-small (6 iterations, raft-small-clean.pth); mgvm's "
        "flow is a weight-free Lucas-Kanade (docs/flow.md), so the masks differ. The official "
        "code warps the frames before the base frame the wrong way; mgvm warps both halves "
        "correctly and by exact pixels (--config.masking.reproduce_warp_bug=True and "
        "--config.masking.warp_scale=official reproduce the official code; docs/algorithms.md "
        "§2.6-2.7). "
        "The 1600e model of the zoo links the same script; its epoch count is not published."
      ),
    ),
    "mgmae_ssv2_b_800e": dict(
      args=dict(dataset="ssv2", masker="mgmae"),
      set=_pretrain(
        **{
          **_MGMAE_PRETRAIN,
          "data.frame_stride": 2,
        }
      ),
      script=f"{_REPO_MGMAE}:scripts/mgmae/vit_b_ssv2_mgmae.sh",
      hardware="16 GPUs (2 nodes x 8, slurm)",
      paper=MGMAE_PAPER,
      headline="SSv2 top-1 71.0 (top-5 93.1) after finetune recipe mgmae_ssv2_b_800e, 16x2x3 views (docs/MODEL_ZOO.md)",
      notes=(
        "As mgmae_k400_b_800e (RAFT vs Lucas-Kanade, the warp defect); SSv2 as 12 fps frames, "
        "every 2nd frame. The 2400e model of the zoo links the same script; its epoch count is "
        "not published."
      ),
    ),
    "everest_ucf101_b_3200e": dict(
      args=dict(dataset="ucf101", masker="random", compress="everest"),
      set=_pretrain(
        **{
          "batch_size": 192,  # 8 GPUs x 24 videos
          "optim.base_lr": 1e-3,
          "masking.ratio": 0.9,
          "masking.compress.ratio": 0.7,  # --motion_centric_masking_ratio
          "data.frame_stride": 4,
          "total_epochs": 3200,
        }
      ),
      script=f"{_REPO_EVEREST}:scripts/ucf101/pretrain.sh",
      hardware="8 GPUs (1 node)",
      paper=EVEREST_PAPER,
      headline="UCF101 top-1 93.7 (top-5 98.9) after finetune recipe everest_ucf101_b_3200e, 16x5x3 views (README.md)",
      notes=(
        "EVEREST passes --epochs 3200 (not 3201 as VideoMAE). The random masker's visible_rule "
        "'auto' keeps int((1 - 0.9) x N) = 156 tokens visible under the everest compressor, as "
        "the official code (docs/algorithms.md §3.2). The paper's frame selection is in neither "
        "repository; it is not part of this recipe."
      ),
    ),
    "everest_hmdb51_b_4800e": dict(
      args=dict(dataset="hmdb51", masker="random", compress="everest"),
      set=_pretrain(
        **{
          "batch_size": 192,
          "optim.base_lr": 1e-3,
          "masking.ratio": 0.9,
          "masking.compress.ratio": 0.7,
          "data.frame_stride": 2,  # --sampling_rate 2
          "total_epochs": 4800,
        }
      ),
      script=f"{_REPO_EVEREST}:scripts/hmdb51/pretrain.sh",
      hardware="8 GPUs (1 node)",
      paper=EVEREST_PAPER,
      headline="HMDB51: not in the official README (the paper reports it)",
      notes="As everest_ucf101_b_3200e, every 2nd frame, 4800 epochs.",
    ),
  },
  "finetune": {
    "videomae_k400_b_800e": dict(
      args=dict(dataset="k400"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 512,  # 64 GPUs x 8 videos, num_sample 1
          "data.num_sample": 1,
          "optim.base_lr": 1e-3,
          "data.frame_stride": 4,
          "eval.num_clips": 5,
          "total_epochs": 100,
        },
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/finetune.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="K400 top-1 80.0 (top-5 94.4), 16x5x3 views, without repeated augmentation (MODEL_ZOO.md)",
      notes=(
        "The zoo's 81.0 (800e with repeated augmentation) has no published fine-tuning script "
        "('TODO' in MODEL_ZOO.md); this is the 80.0 one."
      ),
    ),
    "videomae_k400_b_1600e": dict(
      args=dict(dataset="k400"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 768,  # 64 GPUs x 6 videos x num_sample 2
          "data.num_sample": 2,
          "optim.base_lr": 5e-4,
          "data.frame_stride": 4,
          "eval.num_clips": 5,
          "total_epochs": 75,
        },
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_1600/finetune.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="K400 top-1 81.5 (top-5 95.1), 16x5x3 views (MODEL_ZOO.md)",
      notes=(
        "MODEL_ZOO.md's fine-tune link for this row points at the ViT-L script by mistake; the "
        "ViT-B 1600e folder holds this finetune.sh."
      ),
    ),
    "videomae_ssv2_b_800e": dict(
      args=dict(dataset="ssv2"),
      set=_finetune(
        **_SSV2,
        **{
          "batch_size": 512,  # 64 GPUs x 8 videos, num_sample 1
          "data.num_sample": 1,
          "optim.base_lr": 5e-4,
          "total_epochs": 50,
        },
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/finetune.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="SSv2 top-1 69.6 (top-5 92.0), 16x2x3 views, without repeated augmentation (MODEL_ZOO.md)",
    ),
    "videomae_ssv2_b_2400e": dict(
      args=dict(dataset="ssv2"),
      set=_finetune(
        **_SSV2,
        **{
          "batch_size": 768,  # 64 GPUs x 6 videos x num_sample 2
          "data.num_sample": 2,
          "optim.base_lr": 5e-4,
          "total_epochs": 30,
        },
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_2400/finetune.sh",
      hardware="64 GPUs (8 nodes x 8)",
      paper=VIDEOMAE_PAPER,
      headline="SSv2 top-1 70.8 (top-5 92.4), 16x2x3 views (MODEL_ZOO.md)",
    ),
    "videomae_ucf101_b_3200e": dict(
      args=dict(dataset="ucf101"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 256,  # 8 GPUs x 16 videos x num_sample 2
          "data.num_sample": 2,
          "optim.base_lr": 5e-4,
          "optim.min_lr": 1e-5,
          "optim.layer_decay": 0.7,
          "model.drop_path_rate": 0.2,
          "model.fc_drop_rate": 0.5,
          "data.frame_stride": 4,
          "eval.num_clips": 5,
          "total_epochs": 100,
        },
      ),
      script=f"{_REPO_VIDEOMAE}:scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/finetune.sh",
      hardware="8 GPUs (1 node)",
      paper=VIDEOMAE_PAPER,
      headline="UCF101 top-1 91.3 (top-5 98.5), 16x5x3 views (MODEL_ZOO.md)",
      notes="The script's --warmup_lr 1e-8 is unused: the warmup starts from 0.",
    ),
    "mgmae_k400_b_800e": dict(
      args=dict(dataset="k400"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 1024,  # 32 GPUs x 16 videos x num_sample 2 (the default)
          "data.num_sample": 2,
          "optim.base_lr": 7e-4,
          "data.frame_stride": 4,
          "eval.num_clips": 5,
          "total_epochs": 90,
        },
      ),
      script=f"{_REPO_MGMAE}:scripts/finetune/vit_b_k400_ft.sh",
      hardware="32 GPUs (4 nodes x 8, slurm)",
      paper=MGMAE_PAPER,
      headline="K400 top-1 81.2 (top-5 94.9), 16x5x3 views (docs/MODEL_ZOO.md)",
      notes="The zoo's 1600e model (81.8) links the same fine-tuning script.",
    ),
    "mgmae_ssv2_b_800e": dict(
      args=dict(dataset="ssv2"),
      set=_finetune(
        **_SSV2,
        **{
          "batch_size": 512,  # 16 GPUs x 16 videos x num_sample 2
          "data.num_sample": 2,
          "optim.base_lr": 2e-3,
          "optim.layer_decay": 0.65,
          "total_epochs": 25,
        },
      ),
      script=f"{_REPO_MGMAE}:scripts/finetune/vit_b_ssv2_ft.sh",
      hardware="16 GPUs (2 nodes x 8, slurm)",
      paper=MGMAE_PAPER,
      headline="SSv2 top-1 71.0 (top-5 93.1), 16x2x3 views (docs/MODEL_ZOO.md)",
      notes="The zoo's 2400e model (72.3) links the same fine-tuning script.",
    ),
    "everest_ucf101_b_3200e": dict(
      args=dict(dataset="ucf101", compress="everest"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 128,  # 8 GPUs x 16 videos, num_sample 1
          "data.num_sample": 1,
          "optim.base_lr": 1e-3,
          "masking.ratio": 0.4,  # --mcm --mcm_ratio 0.4, in training and test
          "mixup.enabled": False,  # --mixup 0.0 --cutmix 0.0
          "mixup.mixup_alpha": 0.0,
          "mixup.cutmix_alpha": 0.0,
          "data.frame_stride": 4,
          "eval.num_clips": 5,
          "total_epochs": 100,
        },
      ),
      script=f"{_REPO_EVEREST}:scripts/ucf101/finetune.sh",
      hardware="8 GPUs (1 node)",
      paper=EVEREST_PAPER,
      headline="UCF101 top-1 93.7 (top-5 98.9), 16x5x3 views (README.md)",
      notes="Without mixup the reference trains with label-smoothed cross entropy (0.1).",
    ),
    "everest_hmdb51_b_4800e": dict(
      args=dict(dataset="hmdb51", compress="everest"),
      set=_finetune(
        **_DENSE,
        **{
          "batch_size": 128,
          "data.num_sample": 1,
          "optim.base_lr": 1e-3,
          "masking.ratio": 0.4,
          "mixup.enabled": False,
          "mixup.mixup_alpha": 0.0,
          "mixup.cutmix_alpha": 0.0,
          "data.frame_stride": 2,  # --sampling_rate 2
          "eval.num_clips": 10,  # --test_num_segment 10
          "total_epochs": 50,
        },
      ),
      script=f"{_REPO_EVEREST}:scripts/hmdb51/finetune.sh",
      hardware="8 GPUs (1 node)",
      paper=EVEREST_PAPER,
      headline="HMDB51: not in the official README (the paper reports it)",
    ),
  },
  "detect": {
    "evad_ava_b": dict(
      args=dict(keep=0.7, ew=1.0),
      set=_evad(**_EVAD_B, **_EVAD_B_MODEL),
      script=f"{_REPO_EVAD}:projects/evad/configs/ViT_B_16x4_KTP.yaml",
      hardware="8 GPUs (NUM_GPUS 8, 1 node)",
      paper=EVAD_PAPER,
      headline="AVA v2.2 frame-mAP@0.5 32.3 at 243 GFLOPs, from the VideoMAE ViT-B K400 model (README.md)",
      notes=(
        "init_from: the VideoMAE ViT-B K400 checkpoint the EVAD README links (CHECKPOINT_FILE_PATH)."
      ),
    ),
    "evad_ava_b_keep1": dict(
      args=dict(keep=1.0, ew=1.0),
      set=_evad(**_EVAD_B, **_EVAD_B_MODEL),
      script=f"{_REPO_EVAD}:projects/evad/configs/ViT_B_16x4.yaml",
      hardware="8 GPUs (NUM_GPUS 8, 1 node)",
      paper=EVAD_PAPER,
      headline="AVA v2.2 frame-mAP@0.5 32.1 at 425 GFLOPs (no token pruning; README.md)",
    ),
    "evad_ava_b_ew4": dict(
      args=dict(keep=0.6, ew=4.0),
      set=_evad(**_EVAD_B, **_EVAD_B_MODEL),
      script=f"{_REPO_EVAD}:projects/evad/configs/ViT_B_16x4_KTP_EW.yaml",
      hardware="8 GPUs (NUM_GPUS 8, 1 node)",
      paper=EVAD_PAPER,
      headline="AVA v2.2 frame-mAP@0.5 31.8 at 209 GFLOPs (README.md)",
    ),
    "evad_ava_l": dict(
      args=dict(keep=0.7, ew=1.0),
      set=_evad(
        size="L",
        batch=8,  # TRAIN.BATCH_SIZE 8 over 8 GPUs
        base_lr=1e-5,  # "0.00001 for BATCH=8"
        warmup_start_lr=2.5e-6,
        **{
          "model.drop_path_rate": 0.2,
          "evad.prune_blocks": (6, 12, 18),
          "evad.feature_blocks": (5, 11, 17, 23),
          "evad.decoder_dim": 512,  # MODEL.CRD: 512 wide, 12 deep, 8 heads
          "evad.decoder_depth": 12,
          "evad.decoder_heads": 8,
          "evad.loss_weights.action_weight": 6.0,  # MODEL.SparseRCNN.ACTION_WEIGHT
        },
      ),
      script=f"{_REPO_EVAD}:projects/evad/configs/ViT_L_16x4_KTP.yaml",
      hardware="8 GPUs (NUM_GPUS 8, 1 node)",
      paper=EVAD_PAPER,
      headline="AVA v2.2 frame-mAP@0.5 39.7 at 737 GFLOPs, from a VideoMAE ViT-L K700 model (README.md)",
      notes=(
        "init_from: the ViT-L K700 checkpoint the EVAD README links; VideoMAE publishes no K700 "
        "recipe, so it cannot be trained from these presets."
      ),
    ),
  },
}
