"""tfds builders for standard video data sets, built offline from files the user already has.

Nothing is ever downloaded: each builder reads the videos and the official split files from
`manual_dir` (its layout is in the builder's `MANUAL_DOWNLOAD_INSTRUCTIONS` and in docs/data.md).

    from mgvm.datasets import builders   # registers the builders below with tfds
    builder = builders.MgvmUcf101(config="split1", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
    ds = builder.as_dataset(split="train")      # frames decoded to uint8 [N, H, W, 3]

| builder (tfds name)                      | module     | configs                | splits                    |
| `MgvmVideoFolder` (`mgvm_video_folder`)  | `folder`   | default                | one per list file present |
| `MgvmUcf101` (`mgvm_ucf101`)             | `ucf101`   | split1, split2, split3 | train, test               |
| `MgvmHmdb51` (`mgvm_hmdb51`)             | `hmdb51`   | split1, split2, split3 | train, test               |
| `MgvmKinetics` (`mgvm_kinetics`)         | `kinetics` | k400, k600, k700       | train, validation, test   |
| `MgvmSsv2` (`mgvm_ssv2`)                 | `ssv2`     | default                | train, validation, test   |

Features (all builders): `id` (text), `frames` (Sequence of JPEG images), `fps` (float32, the
rate stored), `num_frames`, `height`, `width` (int64, as stored) and `label` (int64). Labels are
plain integers, not `ClassLabel`, because unlabelled splits (Kinetics / SSv2 test, unlabelled
lists) store -1, which `ClassLabel` cannot hold; the class names are in
`builder.info.metadata["class_names"]` (also `class_names(builder)`).

Files that cannot be used (missing, empty, unreadable, no video stream, no frames, truncated,
or a second entry for the same video) are skipped with a logged warning, never fatal; each split's
skip list is written next to the data as `<split>.skipped.json` and counted in
`builder.info.metadata["counts"]`. A split none of whose videos exist is left out with a warning.
A malformed list / CSV / JSON entry stops the build at once, naming FILE:LINE (JSON: FILE and
entry number) and the reason.
"""

from mgvm.datasets.builders.base import (
  SKIP_REPORT,
  UNLABELLED,
  VIDEO_EXTENSIONS,
  Item,
  ManualDirError,
  MgvmVideoConfig,
  VideoBuilder,
  make_config,
)
from mgvm.datasets.builders.folder import MgvmVideoFolder
from mgvm.datasets.builders.hmdb51 import MgvmHmdb51
from mgvm.datasets.builders.kinetics import MgvmKinetics
from mgvm.datasets.builders.reading import (
  class_names,
  make_parser,
  parse_example,
  skip_report,
  tfrecord_files,
)
from mgvm.datasets.builders.ssv2 import MgvmSsv2
from mgvm.datasets.builders.ucf101 import MgvmUcf101

__all__ = [
  "SKIP_REPORT",
  "UNLABELLED",
  "VIDEO_EXTENSIONS",
  "Item",
  "ManualDirError",
  "MgvmHmdb51",
  "MgvmKinetics",
  "MgvmSsv2",
  "MgvmUcf101",
  "MgvmVideoConfig",
  "MgvmVideoFolder",
  "VideoBuilder",
  "class_names",
  "make_config",
  "make_parser",
  "parse_example",
  "skip_report",
  "tfrecord_files",
]
