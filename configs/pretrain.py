"""python train.py --config configs/pretrain.py:runlocal --workdir /tmp/mgvm_pretrain

VideoMAE pre-training (tube masking 0.9, normalized-pixel targets, AdamW 0.9/0.95,
base LR 1.5e-4 x batch/256, linear warmup from 0 then cosine). Arguments after the
colon: `runlocal` shrinks everything to a CPU-size run; `masker=random|tube|running_cell`.

Until the tf.data pipeline lands (issue #3) the clips are generated moving squares
(`mgvm.demo.moving_squares`), so the loop runs anywhere with nothing to download.
"""

import ml_collections

from mgvm.config import parse_arg


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, masker="tube")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(size="B", dim=0, depth=0, num_heads=0,
                                           decoder_dim=0, decoder_depth=0, decoder_heads=0,
                                           drop_path_rate=0.0, dtype="bfloat16"))
  c.num_frames = 16
  c.image_size = 224
  c.masking = ml_collections.ConfigDict(dict(kind=args.masker, ratio=0.9))
  if args.masker == "running_cell":
    c.masking.decoder_ratio = 0.5
  c.batch_size = 256
  c.total_steps = 100_000
  c.warmup_steps = 5_000
  c.base_lr = 1.5e-4            # scaled by batch_size / 256
  c.min_lr = 1e-5
  c.weight_decay = 0.05
  c.b1, c.b2 = 0.9, 0.95
  c.log_every_steps = 100
  if args.runlocal:
    c.model.update(size="", dim=64, depth=2, num_heads=4, decoder_dim=32, decoder_depth=1,
                   decoder_heads=2, dtype="float32")
    c.num_frames, c.image_size = 8, 64
    c.masking.ratio = 0.75
    c.batch_size = 8
    c.total_steps, c.warmup_steps = 120, 15
    c.base_lr = 0.1               # x 8/256 = 3.1e-3 peak: a tiny model on tiny batches
    c.log_every_steps = 20
  return c
