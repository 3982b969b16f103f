"""Readers of action-detection annotations: AVA CSVs / label maps and the ACT pickles."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from mgvm.datasets import annotations as da
from mgvm.evaluate import frame_map as detection

AVA_GT = """\
vid_a,0902,0.100,0.200,0.300,0.400,12,0
vid_a,0902,0.100,0.200,0.300,0.400,80,0
vid_a,0902,0.500,0.500,0.900,0.950,12,1
vid_a,0903,0.100,0.200,0.300,0.400,12,0
vid_b,1000,0.000,0.000,1.000,1.000,12,3
vid_b,1000,0.000,0.000,1.000,1.000,99,3

vid_b,1001,0.000,0.000,1.000,1.000,12,3
"""


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_ava_rows_merge_per_person_and_drop_excluded_and_unknown(tmp_path):
  gt = _write(tmp_path, "gt.csv", AVA_GT)
  excluded = da.read_ava_excluded(_write(tmp_path, "ex.csv", "vid_a,903\nvid_z,0100\n"))
  assert excluded == {("vid_a", 903), ("vid_z", 100)}
  out = da.read_ava(gt, label_map={12: "talk to", 80: "watch"}, excluded=excluded)
  assert sorted(out.frames) == [("vid_a", 902), ("vid_b", 1000), ("vid_b", 1001)]
  assert out.keyframes == sorted(out.frames)
  first, second = out.frames[("vid_a", 902)]
  assert first.labels == (12, 80) and first.person_id == 0  # multi-label person
  assert first.box_xyxy.dtype == np.float32
  np.testing.assert_allclose(first.box_xyxy, [0.1, 0.2, 0.3, 0.4])
  assert second.labels == (12,) and second.person_id == 1
  assert out.frames[("vid_b", 1000)][0].labels == (12,)  # 99 not in the label map
  assert out.videos == ["vid_a", "vid_b"]
  assert out.dropped == {
    "excluded_rows": 1,
    "excluded_frames": 1,
    "unknown_label_rows": 1,
    "duplicate_label_rows": 0,
  }
  tuples = da.ground_truth_tuples(out.frames)
  assert len(tuples) == 5 and tuples[0][0] == ("vid_a", 902) and tuples[1][2] == 80
  # the readers feed frame_map directly
  result = detection.frame_map(
    [(k, b, c, 1.0) for k, b, c in tuples], tuples, class_ids=out.class_names
  )
  assert result["mAP"] == 1.0


def test_ava_without_person_column_merges_by_box(tmp_path):
  gt = _write(
    tmp_path,
    "gt.csv",
    "v,0902,0.1,0.1,0.2,0.2,1\nv,902,0.1,0.1,0.2,0.2,2\nv,902,0.1,0.1,0.2,0.2,2\n",
  )
  out = da.read_ava(gt)
  (only,) = out.frames[("v", 902)]
  assert only.labels == (1, 2) and only.person_id is None
  assert out.dropped["duplicate_label_rows"] == 1


@pytest.mark.parametrize(
  "line, reason",
  [
    ("vid,0902,0.1,0.2,0.3,0.4", "expected 7 or 8 comma-separated fields, got 6"),
    ("vid,09x2,0.1,0.2,0.3,0.4,12,0", "timestamp '09x2'"),
    ("vid,0902,0.1,0.2,abc,0.4,12,0", "is not 4 numbers"),
    ("vid,0902,0.3,0.2,0.1,0.4,12,0", "x2 < x1"),
    ("vid,0902,0.1,0.2,0.3,0.4,talk,0", "action id 'talk'"),
    ("vid,0902,0.1,0.2,0.3,0.4,12,0.5", "person id '0.5'"),
  ],
)
def test_ava_malformed_line_names_file_and_line(tmp_path, line, reason):
  gt = _write(tmp_path, "gt.csv", "vid,0902,0.1,0.2,0.3,0.4,12,0\n\n" + line + "\n")
  with pytest.raises(ValueError, match=rf"gt\.csv:3: .*{reason}"):
    da.read_ava(gt)


def test_ava_predictions(tmp_path):
  path = _write(
    tmp_path,
    "pred.csv",
    "v,0902,0.1,0.2,0.3,0.4,12,0.75\n"
    "v,0902,0.1,0.2,0.3,0.4,99,0.5\n"
    "v,0903,0.1,0.2,0.3,0.4,12,0.25\n",
  )
  preds = da.read_ava_predictions(path, class_ids={12, 80}, excluded={("v", 903)})
  assert len(preds) == 1
  key, box, cls, score = preds[0]
  assert key == ("v", 902) and cls == 12 and score == 0.75
  np.testing.assert_array_equal(box, [0.1, 0.2, 0.3, 0.4])
  bad = _write(tmp_path, "bad.csv", "v,0902,0.1,0.2,0.3,0.4,12,nan\n")
  with pytest.raises(ValueError, match=r"bad\.csv:1: score is NaN"):
    da.read_ava_predictions(bad)


def test_label_map_both_variants(tmp_path):
  items = _write(
    tmp_path,
    "a.pbtxt",
    """# AVA 60
item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crawl"
  id: 3
}
""",
  )
  assert da.read_label_map(items) == {1: "bend/bow (at the waist)", 3: "crawl"}
  labels = _write(
    tmp_path,
    "b.pbtxt",
    """label {
  name: "bend/bow (at the waist)"
  label_id: 1
  label_type: PERSON_MOVEMENT
}
label {
  name: "talk to (e.g., self, a person, a group)"
  label_id: 79
  label_type: PERSON_INTERACTION
}
""",
  )
  assert da.read_label_map(labels) == {
    1: "bend/bow (at the waist)",
    79: "talk to (e.g., self, a person, a group)",
  }


@pytest.mark.parametrize(
  "text, reason",
  [
    (
      'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 1\n}\n',
      ":7: id 1 appears twice",
    ),
    ('item {\n  name: "a"\n}\n', ":1: item block without"),
    ('item {\n  name: "a"\n  id: x\n}\n', ":3: id 'x' is not an integer"),
    ("thing {\n}\n", ":1: expected 'item {' or 'label {'"),
    ('item {\n  name: "a"\n  id: 1\n', "unexpected end of file"),
  ],
)
def test_label_map_errors(tmp_path, text, reason):
  with pytest.raises(ValueError, match=reason):
    da.read_label_map(_write(tmp_path, "m.pbtxt", text))


# ------------------------------------------------------------------------------ ACT pickles


def _py2_pickle(obj) -> bytes:
  """A protocol-2 pickle as Python 2 + NumPy write it (byte strings, numpy.core names)."""
  out = [b"\x80\x02"]

  def put_str(s):
    data = s if isinstance(s, bytes) else s.encode("latin-1")
    out.append(
      b"U" + bytes([len(data)]) + data
      if len(data) < 256
      else b"T" + struct.pack("<i", len(data)) + data
    )

  def put(x):
    if isinstance(x, dict):
      out.append(b"}(")
      for k, v in x.items():
        put(k)
        put(v)
      out.append(b"u")
    elif isinstance(x, (list, tuple)):
      out.append(b"(")
      for v in x:
        put(v)
      out.append(b"l" if isinstance(x, list) else b"t")
    elif isinstance(x, (str, bytes)):
      put_str(x)
    elif isinstance(x, int):
      out.append(b"J" + struct.pack("<i", x))
    elif isinstance(x, np.ndarray):
      # _reconstruct(ndarray, (0,), 'b') then BUILD with (1, shape, dtype, False, raw bytes)
      out.append(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
      out.append(b"J\x00\x00\x00\x00\x85")
      put_str("b")
      out.append(b"\x87R(J\x01\x00\x00\x00")
      put(tuple(x.shape))
      out.append(b"cnumpy\ndtype\n")
      put_str(x.dtype.str[1:])
      out.append(b"J\x00\x00\x00\x00J\x01\x00\x00\x00\x87R(J\x03\x00\x00\x00")
      put_str("<")
      out.append(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffJ\x00\x00\x00\x00tb\x89")
      put_str(np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes())
      out.append(b"tb")
    else:
      raise TypeError(type(x))

  put(obj)
  out.append(b".")
  return b"".join(out)


def _act_layout():
  tube0 = np.array([[1, 10, 20, 50, 80], [2, 11, 21, 51, 81]], dtype=np.float32)
  tube1 = np.array([[2, 100, 20, 150, 120]], dtype=np.float32)
  tube2 = np.array([[5, 0, 0, 320, 240]], dtype=np.float64)
  return {
    "labels": ["Basketball", "Biking"],
    "gttubes": {"Biking/v_b_g01_c01": {1: [tube0, tube1]}, "Basketball/v_a_g01_c01": {0: [tube2]}},
    "nframes": {"Biking/v_b_g01_c01": 3, "Basketball/v_a_g01_c01": 7},
    "train_videos": [["Basketball/v_a_g01_c01"]],
    "test_videos": [["Biking/v_b_g01_c01"]],
    "resolution": {"Biking/v_b_g01_c01": (240, 320), "Basketball/v_a_g01_c01": (240, 320)},
  }


@pytest.mark.parametrize("writer", ["python2", "protocol2"])
def test_act_pickle_exact_boxes_and_frames(tmp_path, writer):
  path = tmp_path / "UCF101v2-GT.pkl"
  layout = _act_layout()
  path.write_bytes(_py2_pickle(layout) if writer == "python2" else pickle.dumps(layout, protocol=2))
  out = da.read_act_pickle(str(path))
  assert out.class_names == {0: "Basketball", 1: "Biking"}
  assert out.splits == {"train1": ["Basketball/v_a_g01_c01"], "test1": ["Biking/v_b_g01_c01"]}
  assert out.num_frames == {"Biking/v_b_g01_c01": 3, "Basketball/v_a_g01_c01": 7}
  assert list(out.frames) == [
    ("Basketball/v_a_g01_c01", 5),
    ("Biking/v_b_g01_c01", 1),
    ("Biking/v_b_g01_c01", 2),
  ]
  (a,) = out.frames[("Biking/v_b_g01_c01", 1)]
  np.testing.assert_array_equal(a.box_xyxy, [10, 20, 50, 80])
  assert a.labels == (1,) and a.person_id == 0
  b0, b1 = out.frames[("Biking/v_b_g01_c01", 2)]  # two tubes on frame 2
  np.testing.assert_array_equal(b0.box_xyxy, [11, 21, 51, 81])
  np.testing.assert_array_equal(b1.box_xyxy, [100, 20, 150, 120])
  assert (b0.person_id, b1.person_id) == (0, 1)
  norm = da.read_act_pickle(str(path), normalize=True)
  np.testing.assert_allclose(norm.frames[("Basketball/v_a_g01_c01", 5)][0].box_xyxy, [0, 0, 1, 1])
  test = da.select_videos(out, out.splits["test1"])
  assert sorted(test) == [("Biking/v_b_g01_c01", 1), ("Biking/v_b_g01_c01", 2)]


def test_act_pickle_bad_layout(tmp_path):
  layout = _act_layout()
  layout["gttubes"]["Biking/v_b_g01_c01"][1][0] = np.zeros((2, 4), np.float32)
  path = tmp_path / "bad.pkl"
  path.write_bytes(pickle.dumps(layout, protocol=2))
  with pytest.raises(
    ValueError,
    match=r"bad\.pkl: gttubes\['Biking/v_b_g01_c01'\]\[1\]\[0\]: "
    r"expected an \[n, 5\] array",
  ):
    da.read_act_pickle(str(path))
  del layout["resolution"]
  path.write_bytes(pickle.dumps(layout, protocol=2))
  with pytest.raises(ValueError, match="missing key 'resolution'"):
    da.read_act_pickle(str(path))


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "JHMDB-GT.pkl"
  layout = _act_layout()
  layout["labels"] = [_Evil(marker)]
  path.write_bytes(pickle.dumps(layout, protocol=2))
  with pytest.raises(
    da.UnsafePickleError,
    match=r"JHMDB-GT\.pkl: refusing to load "
    r"(posix|nt|os)\.system",
  ):
    da.read_act_pickle(str(path))
  assert not marker.exists()
  # a codec other than latin-1 through _codecs.encode is refused too
  evil = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
  path.write_bytes(evil)
  with pytest.raises(da.UnsafePickleError, match="encoding 'zlib'"):
    da.load_pickle(str(path))
