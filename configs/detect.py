"""python train.py --config configs/detect.py:runlocal --workdir /tmp/mgvm/detect

EVAD action detection (docs/algorithms.md §4): a VideoViT with keyframe-centric token pruning (keep
0.7 at blocks 3, 6, 9 for ViT-B; EW 1), a Sparse R-CNN actor localizer (100 proposals, 6
stages) on keyframe tokens of blocks 2, 5, 8, 11, and a context refinement decoder (6 x 384)
over the kept tokens plus one RoI token per detected person. Clips of 16 frames every 4th frame
centred on the keyframe; AdamW (0.9, 0.999), weight decay 1e-4, base LR 2.5e-5 per 16 clips
(4e-4 per 256), 8x LR on the detection head (the localizer's heads and the context refinement
decoder, as the reference's `det_head`; `optim.lr_multipliers` holds regex patterns), drop
path 0.1. Warmup + cosine here; `recipe=evad_ava_b` has the reference's step decay (x0.1 at
epochs 5 and 8 of 12) and AVA input. `init_from` is a VideoMAE pre-training
or fine-tuning workdir, or a released `.pth` / Hugging Face directory, whose encoder
initialises EVAD's.

Input keys (docs/evad.md): `image_size` (S or (H, W)), `data.resize` ("square": stretched, as
before; "short_side": the aspect kept and zero-padded, AVA's 288 x 512), `data.normalization`
("imagenet" | "kinetics"), `model.pos_grid` (() or (14, 14): the VideoMAE table interpolated per
slice). Evaluation keys: `eval.class_ids` or `eval.label_map` (the classes scored),
`eval.frame_order` ("score" | "input"), `eval.excluded_timestamps` (AVA's CSV).

Arguments after the colon: `runlocal` (a CPU-size run on the synthetic set with 1-2 actors per
video, whose per-frame actor boxes and motion classes are the ground truth),
`keep=0.6` (keep rate), `ew=4` (keyframe query weight), `official_order=1` (the official
code's token-order defect, for ablation). Evaluate with
`python eval.py --config configs/detect.py:runlocal --workdir DIR`: frame-mAP@0.5 (AVA
protocol) and GFLOPs per clip in DIR/eval/<split>.json.
"""

import ml_collections

from configs import common
from mgvm.config import parse_arg


def evad(**overrides):
  """EVAD's pruning, localizer and decoder settings (0 / () means "from the encoder size")."""
  c = ml_collections.ConfigDict(
    dict(
      keep_rate=0.7,
      prune_blocks=(),
      enhanced_weight=1.0,
      official_order=False,
      feature_blocks=(),
      localizer_dim=256,
      num_proposals=100,
      num_stages=6,
      localizer_heads=8,
      dynamic_dim=64,
      ffn_dim=2048,
      decoder_dim=0,
      decoder_depth=0,
      decoder_heads=0,
      decoder_drop_path_rate=0.1,
      action_hidden=2048,
      roi_extension=(0.4, 0.2),
      max_boxes=20,  # ground-truth boxes per keyframe (padded)
      person_threshold=0.7,  # test: proposals with person prob >= this (all if none)
      loss_weights=ml_collections.ConfigDict(
        dict(
          class_weight=2.0, l1_weight=5.0, giou_weight=2.0, no_object_weight=0.1, action_weight=12.0
        )
      ),
    )
  )
  c.update(overrides)
  return c


def get_config(arg=None):
  spec = dict(runlocal=False, keep=0.7, ew=1.0, official_order=False, recipe="")
  args = parse_arg(arg, **spec)
  recipe = common.recipe_args(args, spec, "detect")
  c = ml_collections.ConfigDict()
  c.task = "detect"
  c.seed = 0
  c.init_from = ""
  c.num_classes = 0  # 0: from the data set
  c.model = common.model("B", drop_path_rate=0.1)
  c.num_frames = 16
  c.image_size = ml_collections.FieldReference(224, field_type=object)  # S (S x S) or (H, W)
  c.data = common.data(target_fps=0, frame_stride=4, flip=False)
  # square: the whole frame stretched to image_size; short_side: the aspect kept, scaled by
  # min(H / h, W / w) (short side H, long side <= W), zero-padded bottom / right to (H, W)
  c.data.resize = "square"
  c.data.label_offset = 0  # stored label l is class l - label_offset (AVA's 1-based ids: 1)
  c.evad = evad(
    keep_rate=float(args.keep),
    enhanced_weight=float(args.ew),
    official_order=bool(args.official_order),
  )
  c.batch_size = 16
  c.optim = common.optim(base_lr=4e-4, min_lr=4e-6, warmup_steps=1000, weight_decay=1e-4, b2=0.999)
  # 8x for the reference's detection head (`det_head`): the localizer's heads and the context
  # refinement decoder with its input projection and mask token; backbone, FPN and proposals 1x
  c.optim.lr_multipliers = tuple(
    (name, 8.0)
    for name in ("localizer/heads", "decoder_embed", "mask_token", "decoder_blocks", "action_heads")
  )
  c.mesh = common.mesh()
  c.eval = common.evaluation(
    keyframes_per_video=0,  # 0: every annotated frame
    class_ids=(),  # class ids scored (as the data stores them: AVA's action ids); (): all trained
    label_map="",  # or a pbtxt label map whose ids are scored (AVA's 60-class list)
    frame_order="score",  # per-frame matching order: score (TF API) | input (EVAD's port)
    excluded_timestamps="",  # AVA's excluded-timestamps CSV: those keyframes are not scored
  )
  common.run(c, total_steps=30_000)
  if args.runlocal:
    c.model.update(size="", dim=96, depth=4, num_heads=3, drop_path_rate=0.0, dtype="float32")
    common.runlocal_data(c)
    c.data.synthetic.update(
      min_actors=1, max_actors=2, object_size=(0.25, 0.35), num_train=600, num_val=100, num_test=100
    )
    c.evad.update(
      localizer_dim=64,
      num_proposals=8,
      num_stages=2,
      localizer_heads=4,
      dynamic_dim=16,
      ffn_dim=256,
      decoder_dim=48,
      decoder_depth=2,
      decoder_heads=3,
      decoder_drop_path_rate=0.0,
      action_hidden=128,
      max_boxes=4,
    )
    c.batch_size = 8
    c.optim.update(base_lr=0.016, min_lr=0.0016, warmup_steps=50)  # 5e-4 per 8 clips
    common.run(c, total_steps=600, log_every_steps=25, checkpoint_every_steps=300)
    c.eval.update(split="test", batch_size=16, keyframes_per_video=1)
  return common.apply_recipe(c, recipe)
