"""The tf.data input pipeline: TFRecord shards -> local numpy batches (DESIGN.md §3, docs/data.md).

Order (dmvr's): this host's shards -> interleave -> parse -> choose frame indices by FPS ->
decode only those frames -> augment (one crop/flip per clip) -> normalise -> batch -> prefetch.

Training modes repeat forever and are a pure function of (files, seed, process_index): every
random draw is seeded from (seed, process_index, position in the shuffled example stream), and
`start_step` skips already-consumed records before they are decoded, so a resumed run sees
exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.data import sampling, video_ops

MODES = ("pretrain", "finetune", "eval")
AUTOTUNE = tf.data.AUTOTUNE


def list_files(files: str | Sequence[str]) -> list[str]:
  """Expands file names / glob patterns (each sorted, in the given order)."""
  patterns = [files] if isinstance(files, str) else list(files)
  if not patterns:
    raise ValueError("no input files given (files is empty)")
  out = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no files match {pattern!r}")
    out.extend(matched)
  return out


def host_files(files: str | Sequence[str], process_index: int = 0,
               process_count: int = 1) -> list[str]:
  """This host's shards: every `process_count`-th file starting at `process_index`."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
  all_files = list_files(files)
  mine = all_files[process_index::process_count]
  if not mine:
    raise ValueError(f"process {process_index} of {process_count} gets no files: only "
                     f"{len(all_files)} match {files!r}; write at least {process_count} shards")
  return mine


def count_records(files: Sequence[str]) -> int:
  """Number of records (videos) in `files`; reads them, decodes nothing."""
  ds = tf.data.TFRecordDataset(list(files))
  return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def eval_num_batches(files: str | Sequence[str], *, batch_size: int, num_clips: int = 1,
                     num_crops: int = 1, process_count: int = 1) -> int:
  """Batches the busiest host needs in eval mode: pass it to every host as `eval_batches`.

  Every host then runs the same number of steps (the others pad with fully-masked batches).
  """
  all_files = list_files(files)
  views = num_clips * num_crops
  counts = [count_records(all_files[i::process_count]) if all_files[i::process_count] else 0
            for i in range(process_count)]
  return max(math.ceil(n * views / batch_size) for n in counts)


def iterate_numpy(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """Batches as dicts of numpy arrays."""
  return ds.as_numpy_iterator()


def _sub_seed(seed: int, process_index: int, stream: int) -> int:
  return int(np.random.SeedSequence([seed, process_index, stream]).generate_state(1)[0])


def _parse(serialized):
  ex = fmt.parse_example(serialized)
  n = tf.shape(ex["frames"])[0]
  check = tf.debugging.Assert(n > 0, ["record has no frames (image/encoded); video/id:", ex["id"]])
  with tf.control_dependencies([check]):
    n = tf.identity(n)
  return ex, n


def _check_args(mode, num_frames, image_size, batch_size, target_fps, frame_stride,
                shuffle_buffer, num_clips, num_crops, start_step):
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  for name, value in [("num_frames", num_frames), ("image_size", image_size),
                      ("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer),
                      ("num_clips", num_clips), ("num_crops", num_crops)]:
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value}")
  if int(start_step) != start_step or start_step < 0:
    raise ValueError(f"start_step must be an integer >= 0, got {start_step}")
  sampling.stride_for_np(1.0, target_fps, frame_stride)  # validates both


def make_dataset(files: str | Sequence[str], *, mode: str, num_frames: int, image_size: int,
                 batch_size: int, target_fps: float | None = None, frame_stride: int = 4,
                 seed: int = 0, shuffle_buffer: int = 256, num_clips: int = 1,
                 num_crops: int = 1, flip: bool = True,
                 crop_scale: tuple[float, float] = (0.08, 1.0), start_step: int = 0,
                 process_index: int = 0, process_count: int = 1,
                 eval_batches: int | None = None) -> tf.data.Dataset:
  """Batched clips for this host; see docs/data.md for the element keys.

  `files`: paths or glob patterns. `batch_size` is per host. Train modes ("pretrain":
  multi-scale crop; "finetune": random resized crop + optional flip) repeat forever, shuffle
  files and examples with `seed`, drop the remainder, and start at batch `start_step`.
  "eval": one pass; each video gives `num_clips * num_crops` consecutive views; the last batch
  is zero-padded with `mask` False; `eval_batches` pads further with fully-masked batches to
  exactly that many (see `eval_num_batches`), and fails if there are more.
  """
  _check_args(mode, num_frames, image_size, batch_size, target_fps, frame_stride,
              shuffle_buffer, num_clips, num_crops, start_step)
  files = host_files(files, process_index, process_count)
  if mode == "eval":
    return _eval_dataset(files, num_frames=num_frames, image_size=image_size,
                         batch_size=batch_size, target_fps=target_fps, frame_stride=frame_stride,
                         num_clips=num_clips, num_crops=num_crops, eval_batches=eval_batches)
  if eval_batches is not None:
    raise ValueError(f"eval_batches is for mode='eval', got mode={mode!r}")
  base = tf.constant([seed, process_index], tf.int64)
  file_seed = tf.random.experimental.stateless_fold_in(base, 0)

  def epoch_files(epoch):  # a fresh stateless permutation of the shards per epoch
    keys = tf.random.stateless_uniform([len(files)], tf.random.experimental.stateless_fold_in(
        file_seed, epoch))
    return tf.data.Dataset.from_tensor_slices(tf.gather(tf.constant(files), tf.argsort(keys)))

  ds = tf.data.Dataset.counter().flat_map(epoch_files)
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), block_length=1,
                     num_parallel_calls=AUTOTUNE, deterministic=True)
  ds = ds.shuffle(shuffle_buffer, seed=_sub_seed(seed, process_index, 1),
                  reshuffle_each_iteration=False)
  ds = ds.enumerate().skip(start_step * batch_size)  # skip before parsing / decoding

  def process(position, serialized):
    ex, n = _parse(serialized)
    example_seed = tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(base, 1), position)
    s_time, s_crop, s_flip = tf.unstack(tf.random.experimental.stateless_split(example_seed, 3))
    stride = sampling.stride_for(ex["fps"], target_fps, frame_stride)
    start = sampling.train_start(n, stride, num_frames, s_time)
    indices = sampling.clip_indices(n, stride, num_frames, start)
    frames = video_ops.decode_frames(ex["frames"], indices)
    if mode == "pretrain":
      frames = video_ops.multi_scale_crop(frames, image_size, s_crop)
    else:
      frames = video_ops.random_resized_crop(frames, image_size, s_crop, scale=tuple(crop_scale))
      if flip:
        frames = video_ops.random_flip(frames, s_flip)
    video = tf.ensure_shape(video_ops.normalize(frames), [num_frames, image_size, image_size, 3])
    return {"video": video, "label": ex["label"], "frame_indices": indices,
            "fps": ex["fps"], "stride": tf.cast(stride, tf.float32)}

  ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE, deterministic=True)
  return ds.prefetch(AUTOTUNE)


def _eval_dataset(files, *, num_frames, image_size, batch_size, target_fps, frame_stride,
                  num_clips, num_crops, eval_batches):
  views = num_clips * num_crops

  def process(video_index, serialized):
    ex, n = _parse(serialized)
    stride = sampling.stride_for(ex["fps"], target_fps, frame_stride)
    indices = sampling.eval_indices(n, stride, num_frames, num_clips)  # [K, T]
    frames = video_ops.decode_frames(ex["frames"], tf.reshape(indices, [-1]))
    crops = video_ops.spatial_crops(frames, image_size, num_crops)  # [C, K*T, S, S, 3]
    crops = tf.reshape(crops, [num_crops, num_clips, num_frames, image_size, image_size, 3])
    crops = tf.transpose(crops, [1, 0, 2, 3, 4, 5])  # view = clip * num_crops + crop
    video = video_ops.normalize(tf.reshape(crops, [views, num_frames, image_size, image_size, 3]))
    per_view = lambda x: tf.fill([views], x)
    return {"video": video, "label": per_view(ex["label"]),
            "frame_indices": tf.repeat(indices, num_crops, axis=0),
            "fps": per_view(ex["fps"]), "stride": per_view(tf.cast(stride, tf.float32)),
            "video_index": per_view(tf.cast(video_index, tf.int32)),
            "view": tf.range(views, dtype=tf.int32), "mask": tf.ones([views], tf.bool)}

  def pad(batch):
    real = tf.shape(batch["mask"])[0]

    def pad_one(x):
      padded = tf.pad(x, [[0, batch_size - real]] + [[0, 0]] * (x.shape.rank - 1))
      return tf.ensure_shape(padded, [batch_size] + x.shape[1:])

    return tf.nest.map_structure(pad_one, batch)

  ds = tf.data.TFRecordDataset(files).enumerate()
  ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
  ds = ds.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=True).map(pad)
  if eval_batches is not None:
    if int(eval_batches) != eval_batches or eval_batches < 1:
      raise ValueError(f"eval_batches must be an integer >= 1, got {eval_batches}")

    def check(i, item):  # one batch past the end is pulled to detect overflow
      batch, is_real = item
      ok = tf.debugging.Assert(tf.logical_not(is_real & (i >= eval_batches)), [
          f"eval data on this host needs more than eval_batches={eval_batches} batches"])
      with tf.control_dependencies([ok]):
        return i, tf.nest.map_structure(tf.identity, batch)

    blank = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
    ds = ds.map(lambda batch: (batch, True)).concatenate(
        tf.data.Dataset.from_tensors((blank, False)).repeat())
    ds = ds.take(eval_batches + 1).enumerate().map(check)
    ds = ds.filter(lambda i, _: i < eval_batches).map(lambda _, batch: batch)
  return ds.prefetch(AUTOTUNE)
