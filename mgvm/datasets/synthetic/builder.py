"""A tfds builder for the synthetic motion data set (`mgvm.datasets.synthetic`), made offline.

    builder = MgvmSynthetic(data_dir=DIR)            # or config=make_config("tiny", ...)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    ds = builder.as_dataset(split="train")

The videos are those of `synthetic.write_dataset` for the same config and seed: frames are the
same JPEG bytes, rendered by `synthetic.render_video`.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from mgvm.datasets import synthetic


@dataclasses.dataclass(eq=False)
class MgvmSyntheticConfig(tfds.core.BuilderConfig):
  """A builder config: the generator's config, the split sizes and the seed."""

  synthetic: synthetic.SyntheticConfig = dataclasses.field(
    default_factory=synthetic.SyntheticConfig
  )
  splits: tuple[tuple[str, int], ...] = (("train", 1000), ("val", 100), ("test", 100))
  seed: int = 0


def make_config(
  name: str,
  synthetic_config: synthetic.SyntheticConfig | None = None,
  *,
  splits: Mapping[str, int] | None = None,
  seed: int = 0,
  description: str | None = None,
) -> MgvmSyntheticConfig:
  """A builder config named `name` (it names the data directory: keep names unique)."""
  splits = synthetic.check_splits(dict(MgvmSyntheticConfig.splits) if splits is None else splits)
  empty = [split for split, count in splits.items() if count == 0]
  if empty:
    raise ValueError(f"tfds splits need at least one video; empty: {empty}")
  return MgvmSyntheticConfig(
    name=name,
    description=description or f"synthetic motion videos, splits {splits}",
    synthetic=synthetic_config or synthetic.SyntheticConfig(),
    splits=tuple(splits.items()),
    seed=seed,
  )


class MgvmSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic motion videos: the class is the actor's motion; boxes and motion are stored."""

  VERSION = tfds.core.Version(f"1.{synthetic.VERSION}.0")
  RELEASE_NOTES = {f"1.{synthetic.VERSION}.0": "Initial release."}
  BUILDER_CONFIGS = [
    make_config("default", description="64x64, 2-4 s, 10-60 fps; 1000 / 100 / 100 videos"),
    make_config(
      "small",
      synthetic.SyntheticConfig(image_size=32, min_seconds=1.0, max_seconds=2.0),
      splits={"train": 200, "val": 50, "test": 50},
      description="32x32, 1-2 s; 200 / 50 / 50 videos",
    ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg: synthetic.SyntheticConfig = self.builder_config.synthetic
    s = cfg.image_size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "id": tfds.features.Text(),
          "video": tfds.features.Video(shape=(None, s, s, 3), encoding_format="jpeg"),
          "fps": tfds.features.Scalar(np.float32),
          "label": tfds.features.ClassLabel(names=cfg.classes),
          # [frames, actors, 4] x1 y1 x2 y2 / image size, and the actors' class ids
          "actor_boxes": tfds.features.Tensor(
            shape=(None, None, 4), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB
          ),
          "actor_labels": tfds.features.Tensor(
            shape=(None, None), dtype=np.int64, encoding=tfds.features.Encoding.ZLIB
          ),
          # [frames, objects, 4] every moving object; [frames, objects, 2] (dx, dy) px
          "object_boxes": tfds.features.Tensor(
            shape=(None, None, 4), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB
          ),
          "object_displacement": tfds.features.Tensor(
            shape=(None, None, 2), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB
          ),
        }
      ),
      supervised_keys=("video", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {
      split: self._generate_examples(split, count) for split, count in self.builder_config.splits
    }

  def _generate_examples(self, split: str, count: int):
    cfg = self.builder_config
    for index in range(count):
      video = synthetic.render_video(cfg.synthetic, cfg.seed, split, index)
      yield (
        index,
        {
          "id": video.id,
          "video": synthetic.encode_jpeg(video.frames, cfg.synthetic.jpeg_quality),
          "fps": np.float32(video.fps),
          "label": video.label,
          "actor_boxes": video.actor_boxes,
          "actor_labels": video.actor_labels,
          "object_boxes": video.object_boxes,
          "object_displacement": video.object_displacement,
        },
      )
