"""Evaluates a workdir's latest checkpoint: `python eval.py --config configs/finetune.py:runlocal --workdir DIR`.

Classifiers: top-1/top-5 with softmax averaged over `config.eval.num_clips` x `num_crops`
views. Pre-training checkpoints: masked reconstruction loss and PSNR on held-out clips with
a fixed masking key. Writes DIR/eval/<split>.json, or DIR/eval/<split>.<what differs>.json when
the evaluation's settings differ from the run's (e.g. `test.eval.num_clips=2`; `--tag` names
it instead). `--config.restore_step=N` evaluates step N instead of the latest. `--checkpoint`
evaluates an official VideoMAE `.pth` or a Hugging Face VideoMAE directory instead (no pickled
code is executed); its size must match `config.model`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from mgvm import cli
from mgvm.run import evaluate as runner

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (and :args).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (its latest params are used).")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: config.eval.split).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Official .pth or Hugging Face directory.")
_TAG = flags.DEFINE_string(
  "tag", "", "Result name DIR/eval/<split>.<tag>.json (default: what differs from the run)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # keep Orbax's INFO/WARNING chatter out of the way
  runner.evaluate(
    _CONFIG.value,
    _WORKDIR.value,
    split=_SPLIT.value,
    checkpoint=_CHECKPOINT.value,
    tag=_TAG.value,
  )


if __name__ == "__main__":
  cli.run(main)
