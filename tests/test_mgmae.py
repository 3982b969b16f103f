"""MGMAE motion-guided masking with an injected exact flow (no flow estimator needed)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm import masking
from mgvm.masking import mgmae

GRID = (4, 4, 4)  # 8 frames x 64 x 64, tubelet (2, 16, 16)
FRAMES, SIZE, P = 8, 64, 16
V = 8  # the square moves +8 px in x per frame: one token column per slice
ONE_SEED = 0.9375  # 16 - int(0.9375 * 16) = 1 seed token, k = int(16 * 0.0625) = 1 per slice
BATCH = 8
KEY = 2  # seeds 3 of the 8 samples on column 2 (the tracking tests need >= 2)


def _clip(batch=2, seed=0):
  """A textured 16x16 square moving +V px/frame in x on black; channel 2 holds the frame index.

  At frame t the square covers rows 16..31 and columns 8t..8t+15 (clipped to the frame)."""
  tex = np.random.default_rng(seed).uniform(0.2, 1.0, size=(batch, 16, 16 + V * FRAMES, 2))
  video = np.zeros((batch, FRAMES, SIZE, SIZE, 3), np.float32)
  for t in range(FRAMES):
    x0 = V * t
    w = min(16, SIZE - x0)
    video[:, t, 16:32, x0 : x0 + w, :2] = tex[:, :, :w]
    video[:, t, ..., 2] = t
  return jnp.asarray(video)


def exact_flow(frame_a, frame_b):
  """True displacement of `_clip` from frame a to b (frame_b(x + F) = frame_a(x)): V·(tb − ta)."""
  ta, tb = frame_a[:, 0, 0, 2], frame_b[:, 0, 0, 2]
  dx = jnp.broadcast_to((V * (tb - ta))[:, None, None], frame_a.shape[:3])
  return jnp.stack([dx, jnp.zeros_like(dx)], axis=-1)


def _volume(**options):
  """mask_volume of `_clip(BATCH)` with key KEY, one seed token (token_rand unless overridden)."""
  options = {"ratio": ONE_SEED, "init": "token_rand", "flow_fn": exact_flow, **options}
  return mgmae.mask_volume(jax.random.key(KEY), _clip(BATCH), grid=GRID, **options)


def _seeds():
  """Seed token (row, col) of each sample: the argmax token of the map at base frame 4."""
  tok = np.asarray(mgmae.token_scores(_volume()[:, 4:6], (1, 4, 4))).reshape(BATCH, 16)
  return [divmod(int(np.argmax(t)), 4) for t in tok]


@functools.lru_cache(maxsize=None)
def _runner(**options):
  """A jitted masker with `exact_flow` (one seed token, token_rand unless overridden)."""
  options = {"ratio": ONE_SEED, "init": "token_rand", **options}
  m = mgmae.mgmae_masker(GRID, exact_flow, **options)
  return m, jax.jit(lambda k, v: m(k, v, None))


def _visible_per_slice(out):
  keep = np.asarray(out.ids_keep).reshape(BATCH, 4, -1)
  return [
    [sorted(divmod(int(n) % 16, 4) for n in keep[b, t]) for t in range(4)] for b in range(BATCH)
  ]


# ----------------------------------------------------------------------------- tracking


@pytest.mark.parametrize(
  "init,bug", [("token_rand", False), ("token_rand", True), ("mix_gauss", False)]
)
def test_visible_token_follows_the_square_before_and_after_the_base(init, bug):
  # The seed token at base frame 4 is column 2: in slice t' (frames 2t', 2t'+1) the seed has
  # moved by 16 (t' - 2) px, i.e. it sits on column t' (and half on t' + 1 in frame 2t' + 1).
  # mix_gauss draws its seed tokens as token_rand does (same key): a bump centred there.
  seeds = _seeds()
  tracked = [b for b, (_, j) in enumerate(seeds) if j == 2]
  assert len(tracked) == 3, seeds
  m, run = _runner(init=init, reproduce_warp_bug=bug)
  assert (m.num_keep, m.num_target) == (4, 60)
  vis = _visible_per_slice(run(jax.random.key(KEY), _clip(BATCH)))
  for b in tracked:
    i = seeds[b][0]
    expected = [[(i, t)] for t in range(4)]
    if not bug:
      assert vis[b] == expected, (b, vis[b])
    else:  # after the base (slices 2, 3) still right; before it the map moves the wrong way
      assert vis[b][2:] == expected[2:] and vis[b][:2] != expected[:2], (b, vis[b])


def test_bug_variant_warps_the_first_half_forward_in_time():
  seeds = _seeds()
  b = next(b for b, (_, j) in enumerate(seeds) if j == 2)
  x = np.arange(64)
  for bug, shift in ((False, -V), (True, +V)):
    rows = np.asarray(_volume(reproduce_warp_bug=bug))[b, :, 16 * seeds[b][0] + 8]  # [T, W]
    np.testing.assert_array_equal(rows[4] == 1, (x >= 32) & (x < 48))  # base
    np.testing.assert_array_equal(rows[3] == 1, (x >= 32 + shift) & (x < 48 + shift))
    np.testing.assert_array_equal(rows[5] == 1, (x >= 40) & (x < 56))


def _shift(m, dx):
  """m(x + dx) along the last axis with zero fill (an exact integer backward warp)."""
  out = np.zeros_like(m)
  w = m.shape[-1]
  src = np.arange(w) + dx
  ok = (src >= 0) & (src < w)
  out[..., ok] = m[..., src[ok]]
  return out


def test_propagate_and_hole_filling_with_a_per_sample_base_against_a_numpy_chain():
  base = jnp.asarray([0, 3, 7, 5, 4, 1, 2, 6], jnp.int32)
  calls = []

  def flow_fn(a, b):
    calls.append(a.shape)
    return exact_flow(a, b)

  flows = mgmae.pair_flows(_clip(BATCH), base, flow_fn)
  assert calls == [((FRAMES - 1) * BATCH, SIZE, SIZE, 3)]  # one batched call, T - 1 pairs
  init = np.asarray(jax.random.uniform(jax.random.key(1), (BATCH, SIZE, SIZE), minval=0.5))
  vols = {}
  for filling in ("consist", "none"):
    vols[filling] = vol = np.asarray(
      mgmae.propagate(jnp.asarray(init), flows, base, hole_filling=filling)
    )
    for b in range(BATCH):
      s = int(base[b])
      ref = [None] * FRAMES
      ref[s] = init[b]
      for k in range(s + 1, FRAMES):  # map_k(x) = map_{k-1}(x + F_{k->k-1}), F = -V
        ref[k] = _shift(ref[k - 1], -V)
        if filling == "consist":
          ref[k] = np.where(ref[k] == 0, init[b], ref[k])
      for k in range(s - 1, -1, -1):  # map_k(x) = map_{k+1}(x + F_{k->k+1}), F = +V
        ref[k] = _shift(ref[k + 1], V)
        if filling == "consist":
          ref[k] = np.where(ref[k] == 0, init[b], ref[k])
      np.testing.assert_array_equal(vol[b], np.stack(ref))
  # By hand, sample 0 (base 0): frame 1 samples x - 8, frame 2 samples x - 16 of frame 0; the
  # pixels that come from outside the image take the base map (consist) or stay 0 (none).
  full, bare, i = vols["consist"][0], vols["none"][0], init[0]
  np.testing.assert_array_equal(full[1, :, 8:], i[:, :56])
  np.testing.assert_array_equal(full[1, :, :8], i[:, :8])
  np.testing.assert_array_equal(full[2, :, 16:], i[:, :48])
  np.testing.assert_array_equal(full[2, :, 8:16], i[:, :8])
  np.testing.assert_array_equal(full[2, :, :8], i[:, :8])
  np.testing.assert_array_equal(bare[2, :, :16], 0)
  np.testing.assert_array_equal(bare[2, :, 16:], i[:, :48])


def _bilinear(img, flow):
  """numpy reference: zero-padded bilinear sample of img [H, W] at (x + dx, y + dy)."""
  h, w = img.shape
  out = np.zeros_like(img)
  for y in range(h):
    for x in range(w):
      sx, sy = x + flow[y, x, 0], y + flow[y, x, 1]
      x0, y0 = int(np.floor(sx)), int(np.floor(sy))
      for yi, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
        for xi, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
          if 0 <= xi < w and 0 <= yi < h:
            out[y, x] += wx * wy * img[yi, xi]
  return out


def test_backward_warp_is_bilinear_with_zero_padding():
  rng = np.random.default_rng(0)
  img = rng.uniform(size=(2, 8, 9)).astype(np.float32)
  flow = (3 * rng.normal(size=(2, 8, 9, 2))).astype(np.float32)
  ref = np.stack([_bilinear(img[b], flow[b]) for b in range(2)])
  np.testing.assert_allclose(mgmae.backward_warp(img, flow), ref, atol=1e-5)


# ----------------------------------------------------------------------------- initial maps


@pytest.mark.parametrize("mix", ["max", "sum"])
def test_mix_gauss_by_hand(mix):
  key, grid, ratio = jax.random.key(4), (1, 4, 4), 0.75  # 16 - 12 = 4 seeds, patch 8 on 32 x 32
  tok = np.asarray(mgmae.initial_map(key, 2, (32, 32), grid, ratio=ratio, init="token_rand"))
  got = np.asarray(mgmae.initial_map(key, 2, (32, 32), grid, ratio=ratio, gauss_mix=mix))
  y, x = np.mgrid[:32, :32]
  for b in range(2):
    seeds = [(i, j) for i in range(4) for j in range(4) if tok[b, 8 * i, 8 * j] == 1]
    assert len(seeds) == 4 and np.isclose(tok[b], 1e-8).sum() == 1024 - 4 * 64
    bumps = np.stack(
      [np.exp(-(((x - 8 * j - 3.5) / 8) ** 2) - ((y - 8 * i - 3.5) / 8) ** 2) for i, j in seeds]
    )
    ref = bumps.max(0) if mix == "max" else bumps.sum(0)
    np.testing.assert_allclose(got[b], ref / ref.max(), rtol=1e-5, atol=1e-7)
    if mix == "max":
      peak = np.exp(-2 * (0.5 / 8) ** 2)  # the 4 pixels nearest a centre (8i + 3.5)
      for i, j in seeds:
        np.testing.assert_allclose(got[b, 8 * i + 3 : 8 * i + 5, 8 * j + 3 : 8 * j + 5], 1.0)
      i, j = seeds[0]
      near = bumps[0, 8 * i + 3, 8 * j + 7]  # 3.5 px right, 0.5 px up of the centre
      np.testing.assert_allclose(near, np.exp(-((3.5 / 8) ** 2) - (0.5 / 8) ** 2), rtol=1e-6)
      assert got[b].max() == 1.0 and got[b, 8 * i + 3, 8 * j + 7] >= near / peak - 1e-6


def test_pixel_rand_and_token_rand_counts():
  key = jax.random.key(5)
  pix = np.asarray(mgmae.initial_map(key, 2, (32, 32), (1, 4, 4), ratio=0.75, init="pixel_rand"))
  assert ((pix == 1).sum(axis=(1, 2)) == 1024 - int(0.75 * 1024)).all()
  assert np.isclose(pix[pix != 1], 1e-8).all()
  tok = np.asarray(mgmae.initial_map(key, 2, (32, 32), (1, 4, 4), ratio=0.75, init="token_rand"))
  assert ((tok == 1).sum(axis=(1, 2)) == (16 - int(0.75 * 16)) * 64).all()


# ----------------------------------------------------------------------------- counts, selection


def test_counts_per_slice_topk_on_all_and_one_trace():
  assert mgmae.visible_per_slice((8, 14, 14), 0.9) == 19  # int(196 * 0.1) = int(19.6)
  assert mgmae.mgmae_counts((8, 14, 14), 0.9) == (152, 1568 - 152)
  built = masking.build({"kind": "mgmae"}, (8, 14, 14))
  assert (built.num_keep, built.num_target) == (152, 1416) and built.kind == "mgmae"
  video = _clip(BATCH)
  # The compose priority's call (ratio 0.9: 16 - int(14.4) = 2 seeds, k = int(1.6) = 1 per slice).
  scores = np.asarray(
    mgmae.token_scores(
      mgmae.mask_volume(jax.random.key(6), video, grid=GRID, flow_fn=exact_flow), GRID
    )
  )
  for on_all in (False, True):
    m = mgmae.mgmae_masker(GRID, exact_flow, ratio=0.9, topk_on_all=on_all)
    assert (m.num_keep, m.num_target) == (4, 60)
    traces = []

    @jax.jit
    def run(key, video):
      traces.append(1)
      return m(key, video, None)

    for i in (7, 8, 6):
      keep, tgt, mask = map(np.asarray, run(jax.random.key(i), video))
    assert len(traces) == 1
    assert keep.shape == (BATCH, 4) and tgt.shape == (BATCH, 60)
    for b in range(BATCH):
      assert (np.diff(keep[b]) > 0).all() and (np.diff(tgt[b]) > 0).all()
      np.testing.assert_array_equal(np.sort(np.concatenate([keep[b], tgt[b]])), np.arange(64))
      np.testing.assert_array_equal(np.flatnonzero(~mask[b]), keep[b])
      if on_all:
        expected = np.sort(np.argsort(-scores[b], kind="stable")[:4])
      else:
        expected = [t * 16 + np.argmax(scores[b, t * 16 : (t + 1) * 16]) for t in range(4)]
        assert (np.bincount(keep[b] // 16, minlength=4) == 1).all()
      np.testing.assert_array_equal(keep[b], expected)
    if on_all:  # the global top-4 is not one per slice in every sample
      assert any(len(set(keep[b] // 16)) < 4 for b in range(BATCH))


def test_random_base_frame_keeps_shapes_and_the_initial_map_at_the_base():
  init = np.asarray(_volume())[:, 4]  # the initial map: the middle base frame's map
  vol = np.asarray(_volume(base_frame="random"))
  assert vol.shape == (BATCH, FRAMES, SIZE, SIZE)
  bases = [[k for k in range(FRAMES) if np.array_equal(vol[b, k], init[b])] for b in range(BATCH)]
  assert all(bases) and len({tuple(b) for b in bases}) > 1, bases


def test_random_batch_draws_one_base_frame_for_the_whole_batch():
  """The official `random` base frame is one draw per batch; `random` draws one per sample."""
  bases = set()
  for key in range(4):
    vol = np.asarray(
      mgmae.mask_volume(
        jax.random.key(key),
        _clip(BATCH),
        grid=GRID,
        flow_fn=exact_flow,
        ratio=ONE_SEED,
        init="token_rand",
        base_frame="random_batch",
      )
    )
    first = np.asarray(
      mgmae.initial_map(
        jax.random.key(key), BATCH, (SIZE, SIZE), GRID, ratio=ONE_SEED, init="token_rand"
      )
    )
    found = [
      [k for k in range(FRAMES) if np.array_equal(vol[b, k], first[b])] for b in range(BATCH)
    ]
    drawn = int(jax.random.randint(jax.random.fold_in(jax.random.key(key), 1), (), 0, FRAMES))
    assert found == [[drawn]] * BATCH, (key, found)
    bases.add(drawn)
  assert len(bases) > 1, bases


def test_official_warp_scale_moves_a_pattern_by_flow_times_w_minus_1_over_w():
  # A linear pattern m(x, y) = x + 100 y is warped exactly by bilinear sampling, so frame 1 of
  # a chain from base 0 reads m at (x + dx', y + dy'): dx' = 2 and dy' = 4 with "exact",
  # dx' = 2 * 15/16 = 1.875 and dy' = 4 * 7/8 = 3.5 with "official" (W = 16, H = 8).
  h, w = 8, 16
  y, x = np.mgrid[:h, :w].astype(np.float32)
  init = jnp.asarray((x + 100 * y)[None])
  flows = jnp.broadcast_to(jnp.asarray([2.0, 4.0]), (1, 1, h, w, 2))  # T = 2, B = 1
  base = jnp.zeros((1,), jnp.int32)
  for scale, (dx, dy) in (("exact", (2.0, 4.0)), ("official", (1.875, 3.5))):
    got = np.asarray(mgmae.propagate(init, flows, base, hole_filling="none", warp_scale=scale))
    np.testing.assert_array_equal(got[0, 0], init[0])
    inside = (x + dx <= w - 1) & (y + dy <= h - 1)
    np.testing.assert_allclose(got[0, 1][inside], (x + dx + 100 * (y + dy))[inside], atol=1e-3)
  np.testing.assert_allclose(
    mgmae.official_displacement(flows)[0, 0, 0, 0], [2 * 15 / 16, 4 * 7 / 8], rtol=1e-6
  )
  # Through the masker's volume: "official" equals "exact" on the scaled flow.
  scaled = lambda a, b: mgmae.official_displacement(exact_flow(a, b))  # noqa: E731
  np.testing.assert_array_equal(
    _volume(warp_scale="official"), _volume(flow_fn=scaled, warp_scale="exact")
  )
  assert not np.array_equal(_volume(warp_scale="official"), _volume())


def test_compose_priority_is_the_token_score():
  video = _clip(BATCH)
  prio = mgmae.compose_priority(
    jax.random.key(3), BATCH, GRID, video=video, ratio=0.75, flow_fn=exact_flow
  )
  vol = mgmae.mask_volume(jax.random.key(3), video, grid=GRID, ratio=0.75, flow_fn=exact_flow)
  np.testing.assert_array_equal(prio, mgmae.token_scores(vol, GRID))
  composed = masking.build(
    {"kind": "mgmae", "ratio": 0.75, "compress": {"kind": "mgtc", "ratio": 0.25}}, GRID
  )
  assert (composed.num_keep, composed.num_target) == (16, 48 - 16)
  # The masker's options reach the priority (the config lists every one of them).
  options = dict(base_frame="first", warp_scale="official", topk_on_all=False)
  np.testing.assert_array_equal(
    mgmae.compose_priority(
      jax.random.key(3),
      BATCH,
      GRID,
      video=video,
      ratio=0.75,
      flow_fn=exact_flow,
      base_frame="first",
      warp_scale="official",
    ),
    mgmae.token_scores(
      mgmae.mask_volume(
        jax.random.key(3),
        video,
        grid=GRID,
        ratio=0.75,
        flow_fn=exact_flow,
        base_frame="first",
        warp_scale="official",
      ),
      GRID,
    ),
  )
  built = masking.build(
    {"kind": "mgmae", **options, "compress": {"kind": "mgtc", "ratio": 0.25}}, GRID
  )
  assert built.params["warp_scale"] == "official" and built.params["ratio"] == 0.9
  with pytest.raises(ValueError, match="needs video"):
    mgmae.compose_priority(jax.random.key(3), BATCH, GRID, video=None, ratio=0.75)


def _uniform_codec_motion(batch=BATCH):
  """The codec field of `_clip`'s motion: every block's content moved +V px in x from frame
  k − 1 to k (entry 0 zero), on the 4 x 4 token grid."""
  m = np.zeros((batch, FRAMES, 4, 4, 2), np.float32)
  m[:, 1:, ..., 0] = V
  return jnp.asarray(m)


def test_codec_flow_warps_as_the_exact_flow_it_encodes():
  # d_{k+1} = +V: after the base F_{k+1→k} = −d = −V, before it F_{k→k+1} = +d = +V, which is
  # exact_flow's V·(t_b − t_a) both ways: the same volume and masks, bug or not.
  motion = _uniform_codec_motion()
  for bug in (False, True):
    got = mgmae.mask_volume(
      jax.random.key(KEY),
      _clip(BATCH),
      motion,
      grid=GRID,
      ratio=ONE_SEED,
      init="token_rand",
      flow="codec",
      reproduce_warp_bug=bug,
    )
    np.testing.assert_array_equal(np.asarray(got), np.asarray(_volume(reproduce_warp_bug=bug)))
  m = masking.build(
    {"kind": "mgmae", "ratio": ONE_SEED, "init": "token_rand", "flow": "codec"}, GRID
  )
  assert m.needs_motion and m.params["flow"] == "codec"
  out = jax.jit(lambda k, v, x: m(k, v, None, motion=x))(jax.random.key(KEY), _clip(BATCH), motion)
  _, run = _runner()
  for a, b in zip(out, run(jax.random.key(KEY), _clip(BATCH))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="reads the codec motion field"):
    m(jax.random.key(0), _clip(1))


def test_codec_pair_flows_sign_and_upsampling_on_a_non_uniform_field():
  # 3 frames, 2 x 2 blocks of 4 px; base frame 1: pair 0 (frames 0, 1) is before the base and
  # takes +d_1, pair 1 (frames 1, 2) after it and takes −d_2; each block's vector fills its
  # 4 x 4 pixels.
  d = np.arange(3 * 2 * 2 * 2, dtype=np.float32).reshape(1, 3, 2, 2, 2) + 1.0
  flows = np.asarray(mgmae.codec_pair_flows(jnp.asarray(d), jnp.asarray([1]), (8, 8)))
  assert flows.shape == (2, 1, 8, 8, 2)
  for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
    block = (slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4))
    np.testing.assert_array_equal(flows[0, 0][block], np.broadcast_to(d[0, 1, i, j], (4, 4, 2)))
    np.testing.assert_array_equal(flows[1, 0][block], np.broadcast_to(-d[0, 2, i, j], (4, 4, 2)))
  bug = np.asarray(
    mgmae.codec_pair_flows(jnp.asarray(d), jnp.asarray([1]), (8, 8), reproduce_warp_bug=True)
  )
  np.testing.assert_array_equal(bug[0], -flows[0])
  with pytest.raises(ValueError, match="flow must be one of"):
    masking.build({"kind": "mgmae", "flow": "raft"}, GRID)


def test_same_masks_on_8_devices_as_on_1():
  devices = jax.devices()
  assert len(devices) == 8
  mesh = jax.sharding.Mesh(np.array(devices), ("data",))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  video = _clip(BATCH)
  _, run = _runner()
  one = run(jax.random.key(5), video)
  eight = run(jax.random.key(5), jax.device_put(video, sharded))
  assert len(eight.mask.sharding.device_set) == 8
  for a, b in zip(one, eight):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_errors_name_the_key():
  for key, value in (
    ("init", "gauss"),
    ("base_frame", "last"),
    ("hole_filling", "prev"),
    ("gauss_mix", "mean"),
    ("warp_scale", "torch"),
  ):
    with pytest.raises(ValueError, match=f"{key} must be one of"):
      masking.build({"kind": "mgmae", key: value}, GRID)
  with pytest.raises(ValueError, match="did you mean 'base_frame'"):
    masking.build({"kind": "mgmae", "base_frames": "first"}, GRID)
  with pytest.raises(ValueError, match="keeps int"):
    masking.build({"kind": "mgmae", "ratio": 0.95}, GRID)  # int(16 * 0.05) = 0 visible
  with pytest.raises(ValueError, match="needs an optical-flow|warps a map"):
    masking.build({"kind": "mgmae"}, GRID)(jax.random.key(0), None, jnp.zeros((1, 64, 8)))
  with pytest.raises(ValueError, match="does not split"):
    mgmae.mgmae_masker(GRID, exact_flow)(jax.random.key(0), jnp.zeros((1, 8, 62, 64, 3)))


@pytest.mark.slow  # end to end: flow estimate, warping and masking of a moving square
@pytest.mark.xla_optimized  # the flow estimator's run time dominates (5 s vs 14 s unoptimized)
def test_with_the_default_flow_estimator_the_visible_token_follows_the_square():
  """End to end with `mgvm.flow.estimate`: a textured square moving 8 px per frame over black."""
  batch = 32
  tex = np.random.default_rng(7).uniform(0.2, 1.0, size=(batch, 16, 16 + V * FRAMES, 3))
  video = np.zeros((batch, FRAMES, SIZE, SIZE, 3), np.float32)
  for t in range(FRAMES):
    w = min(16, SIZE - V * t)
    video[:, t, 16:32, V * t : V * t + w] = tex[:, :, :w]
  video = jnp.asarray(video)
  options = dict(ratio=ONE_SEED, init="token_rand")
  base = np.asarray(
    mgmae.mask_volume(jax.random.key(11), video, grid=GRID, flow_fn=exact_flow, **options)
  )[:, 4]
  on_square = [b for b in range(batch) if base[b, 24, 40] == 1.0]  # seed token (1, 2) at frame 4
  assert on_square, "no sample seeded on the square: pick another key"
  m = masking.build({"kind": "mgmae", **options}, GRID)
  out = jax.jit(lambda k, v: m(k, v, None))(jax.random.key(11), video)
  keep = np.asarray(out.ids_keep).reshape(batch, 4)
  for b in on_square:  # slice t' holds the square at column t' (frames 2t', 2t' + 1)
    assert [divmod(int(n) % 16, 4) for n in keep[b]] == [(1, t) for t in range(4)], (b, keep[b])
