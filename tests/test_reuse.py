"""Tile reuse for static cameras: change decisions, compositing, no trails, refresh, stats, runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from media import read_video

from streamsr import RunConfig
from streamsr.backends import WrappedBackend, create_backend
from streamsr.backends.tiling import window_ranges
from streamsr.errors import ConfigError
from streamsr.models import get_model
from streamsr.pipeline.job import JobSnapshot, upscale_video
from streamsr.pipeline.metrics_http import render_metrics
from streamsr.pipeline.reuse import (
    PROBE_FRAMES,
    ReuseCounters,
    ReusePolicy,
    TileReuse,
    expected_levels,
    plan_reuse,
    spatial_noise,
)
from streamsr.synth import StaticScene, texture_pattern, write_clip

ESPCN = get_model("espcn").variant(2)


class Counting(WrappedBackend):
    """Counts the LR pixels and calls that reach the network."""

    def __init__(self, inner):
        super().__init__(inner)
        self.pixels = self.calls = 0

    def infer(self, batch, extra=None):
        self.calls += 1
        self.pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]
        return self.inner.infer(batch, extra)


@pytest.fixture(scope="module")
def espcn():
    return create_backend("torch", ESPCN, device="cpu")


def _chw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _noisy(base: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(base + rng.normal(0, sigma / 255, base.shape).astype(np.float32), 0, 1)


def _reuse(backend, **policy) -> tuple[TileReuse, Counting]:
    counting = Counting(backend)
    return TileReuse(counting, ReusePolicy(**{"overlap": 4, "core": 32, **policy})), counting


@pytest.mark.parametrize("size,core,overlap", [(100, 32, 4), (64, 32, 16), (30, 32, 4), (97, 20, 0), (33, 32, 4)])
def test_windows_are_one_length_and_keep_every_pixel_once(size, core, overlap):
    ranges = window_ranges(size, core, overlap)
    assert {r1 - r0 for r0, r1, _, _ in ranges} == {min(size, core + 2 * overlap)}
    kept = [p for _, _, k0, k1 in ranges for p in range(k0, k1)]
    assert kept == list(range(size))
    for r0, r1, k0, k1 in ranges:  # context on each side, or the frame's edge
        assert r0 <= k0 and k1 <= r1
        assert k0 - r0 >= overlap or r0 == 0
        assert r1 - k1 >= overlap or r1 == size


def test_an_unchanged_frame_runs_nothing_and_a_changed_block_runs_its_tiles(espcn):
    reuse, net = _reuse(espcn, core=32, overlap=4)
    base = _chw(texture_pattern(0, 96, 128))  # 3 × 4 tiles of 32
    first = reuse(base, {}, 0.0, False)
    assert net.calls == 1 and net.pixels == 96 * 128  # the first frame runs whole
    same = reuse(base.copy(), {}, 0.04, False)
    assert net.calls == 1 and same is first  # nothing ran; the output is the previous one
    changed = base.copy()
    changed[:, 40:48, 40:48] = 1 - changed[:, 40:48, 40:48]  # inside tile (row 1, column 1), away from its edges
    reuse(changed, {}, 0.08, False)
    assert net.calls == 2 and net.pixels == 96 * 128 + 40 * 40  # one tile: its 32-pixel core and 4 each side
    border = changed.copy()
    border[:, 60:64, 10:20] = 0  # rows 60-63 lie in tile row 1's core and in row 2's window (from 60)
    reuse(border, {}, 0.12, False)
    assert net.pixels == 96 * 128 + 40 * 40 + 2 * 40 * 40  # the tile holding it and the one below
    summary = reuse.counters.summary()
    assert summary["frames"] == 4 and summary["whole_frames"] == 1
    assert summary["recomputed_mean"] == pytest.approx((1 + 0 + 1 / 12 + 2 / 12) / 4, abs=1e-4)


def test_sensor_noise_alone_is_not_a_change(espcn):
    reuse, net = _reuse(espcn)
    base = _chw(texture_pattern(0, 96, 128))
    for i in range(20):  # it learns the camera's noise level from 0 (recomputing more meanwhile)
        reuse(_noisy(base, 8.0, i), {}, i * 0.04, False)
    calls, net.pixels_before = net.calls, net.pixels
    for i in range(20, 40):
        reuse(_noisy(base, 8.0, i), {}, i * 0.04, False)
    assert net.calls == calls  # then fresh noise on every frame never looks like motion
    moved = _noisy(base, 8.0, 99)
    moved[:, 8:24, 8:24] = np.roll(moved[:, 8:24, 8:24], 4, axis=2)  # a small real change, under the same noise
    reuse(moved, {}, 1.6, False)
    assert net.calls == calls + 1 and net.pixels - net.pixels_before < 96 * 128 / 2


def test_the_first_guess_of_the_noise_comes_from_the_picture():
    flat = np.full((3, 128, 128), 0.5, dtype=np.float32)
    assert spatial_noise(_noisy(flat, 10.0, 1)) * 255 == pytest.approx(10.0, rel=0.05)
    a, b = _noisy(flat, 10.0, 2), _noisy(flat, 10.0, 3)
    from streamsr.pipeline.reuse import block_means

    shift, spread = np.abs(block_means((a - b).mean(0)[None])), block_means(np.abs(a - b).mean(0)[None])
    expected = expected_levels(10.0 / 255)
    assert np.quantile(shift, 0.25) == pytest.approx(expected[0], rel=0.25)
    assert np.quantile(spread, 0.25) == pytest.approx(expected[1], rel=0.1)


def test_compositing_equals_whole_frame_inference_when_every_tile_is_recomputed(espcn):
    reuse, net = _reuse(espcn, scene_cut=1.0)  # never fall back to the whole frame
    reuse(_chw(texture_pattern(0, 100, 136)), {}, 0.0, False)
    other = _chw(texture_pattern(5, 100, 136))[:, ::-1].copy()  # every tile changed
    out = reuse(other, {}, 0.04, False)
    assert reuse.counters.summary()["whole_frames"] == 1 and net.calls == 2  # tiles, one batch (one shape)
    whole = espcn.infer(other[None])[0]
    assert out.shape == whole.shape == (3, 200, 272)
    np.testing.assert_allclose(out, whole, atol=1e-5)


def test_a_moving_object_never_leaves_a_trail(espcn):
    sigma = 3.0
    scene = StaticScene(texture_pattern(0, 288, 384), scale=2, objects=2, noise=sigma, speed=5.0, seed=1)
    reuse, _net = _reuse(espcn)
    for i in range(60):
        lr = _chw(scene.lr(i))
        diff = np.abs(reuse(lr, {}, i / 25, False) - espcn.infer(lr[None])[0])
        # a trail is a box's texture (random levels 0-255) where whole-frame inference has none:
        # differences of 64 levels and more; reused static tiles differ by their noise only
        assert (diff > 0.25).sum() == 0, f"frame {i}: a trail"
        for y0, y1, x0, x1 in scene.box_spans(i):  # in and around a box: recomputed, so exact
            if x1 > x0:
                region = diff[:, max(0, y0 - 8) : y1 + 8, max(0, x0 - 8) : x1 + 8]
                assert region.mean() < 2 * sigma / 255, f"frame {i}: the box's tiles were reused"
    saving = reuse.counters.saving
    assert saving is not None and saving > 2  # the rest of the picture was reused, not recomputed


def test_a_picture_that_keeps_moving_never_freezes(espcn):
    """A pan or a scene that changes everywhere, frame after frame: each frame is a scene cut and
    runs whole. (The noise level once rose with such frames until nothing counted as a change and
    the output froze from frame 19 on.)"""
    from streamsr.synth import moving_pattern

    reuse, _net = _reuse(espcn)
    for i in range(60):
        lr = _chw(moving_pattern(i, 96, 128))
        np.testing.assert_allclose(reuse(lr, {}, i / 25, False), espcn.infer(lr[None])[0], atol=1e-5,
                                   err_msg=f"frame {i}")
    assert reuse.counters.whole_frames == 60


def test_keyframes_refresh_every_tile_and_old_tiles_are_recomputed(espcn):
    base = _chw(texture_pattern(0, 64, 96))
    reuse, net = _reuse(espcn)
    reuse(base, {}, 0.0, True)
    reuse(base, {}, 1.0, False)
    reuse(base, {}, 2.0, True)  # a keyframe: whole frame again
    assert net.calls == 2 and reuse.counters.refreshes == 2
    timed, net = _reuse(espcn, refresh=1.5)  # seconds: keyframes do not refresh, age does
    timed(base, {}, 0.0, True)
    timed(base, {}, 1.0, True)
    assert net.calls == 1
    timed(base, {}, 2.0, False)  # every tile is older than 1.5 s
    assert net.calls == 2 and timed.counters.refreshes == 2
    timed(base, {}, 1.0, False)  # time went backwards (a live restart): recompute, never trust old tiles
    assert net.calls == 3


def test_a_scene_cut_runs_the_whole_frame(espcn):
    reuse, net = _reuse(espcn)
    reuse(_chw(texture_pattern(0, 64, 96)), {}, 0.0, False)
    reuse(_chw(texture_pattern(3, 64, 96))[:, ::-1].copy(), {}, 0.04, False)
    assert net.calls == 2 and net.pixels == 2 * 64 * 96 and reuse.counters.scene_cuts == 1


def test_what_the_model_is_told_changing_recomputes_everything():
    udvd = create_backend("torch", get_model("udvd").variant(2), device="cpu")
    reuse, net = _reuse(udvd, overlap=16, core=64)
    from streamsr.models.inputs import InputAssembler
    from streamsr.pipeline.stages import Telling

    inputs = InputAssembler(udvd.variant.inputs)
    base = _chw(texture_pattern(0, 64, 96))

    def told(noise):
        return inputs.arrays(Telling(blur=1.0, noise=noise).conditions([None]), 64, 96, (128, 192))

    reuse(base, told(10.0), 0.0, False)
    reuse(base, told(10.2), 0.04, False)  # within 5 %: reused
    assert net.calls == 1
    reuse(base, told(15.0), 0.08, False)
    assert net.calls == 2 and reuse.counters.whole_frames == 2


def test_auto_on_a_file_turns_itself_off_when_it_does_not_pay(espcn):
    from streamsr.synth import moving_pattern

    reuse, net = _reuse(espcn, probe=5)
    for i in range(8):
        reuse(_chw(moving_pattern(i, 64, 96)), {}, i * 0.04, False)  # every frame changed everywhere
    c = reuse.counters
    assert not c.on and c.frames == 5 and "turned off after 5 frames" in c.decision
    assert net.calls == 8 and net.pixels == 8 * 64 * 96  # whole frames, before and after


def test_plan_reuse_decides_once():
    common = {"learned": True, "shrinks": False, "colour_on": "cpu", "halo": None, "overlap": 16}
    assert plan_reuse("off", None, live=True, **common) is None
    live = plan_reuse("auto", None, live=True, **common)
    assert live.probe == 0 and live.overlap == 16 and live.core == 64
    assert plan_reuse("auto", 3.0, live=False, **common).probe == PROBE_FRAMES
    assert plan_reuse("on", None, live=False, **common).probe == 0
    espcn = plan_reuse("auto", None, live=True, **{**common, "halo": 4})
    assert (espcn.overlap, espcn.core) == (4, 32)
    assert plan_reuse("auto", None, live=True, **{**common, "shrinks": True}) is None
    with pytest.raises(ConfigError, match="shrinks"):
        plan_reuse("on", None, live=True, **{**common, "shrinks": True})
    with pytest.raises(ConfigError, match="colour-on cpu"):
        plan_reuse("on", None, live=True, **{**common, "colour_on": "device"})


@pytest.mark.parametrize("value,expected", [("keyframe", None), ("2.5", 2.5), (4, 4.0), (None, None)])
def test_reuse_refresh_reads_seconds_or_keyframe(value, expected):
    assert RunConfig(reuse_refresh=value).reuse_refresh == expected


@pytest.mark.parametrize("options", [{"reuse": "maybe"}, {"reuse_refresh": "often"}, {"reuse_refresh": 0}])
def test_bad_reuse_options_are_refused(options):
    with pytest.raises(ConfigError, match="reuse"):
        RunConfig(**options)


def _static_clip(path, frames=60, noise=2.0):
    scene = StaticScene(texture_pattern(0, 240, 320), scale=2, objects=1, noise=noise, speed=4.0)
    write_clip(path, frames=frames, size=(160, 120), codec="libx264rgb", pix_fmt="rgb24",
               image=lambda i, h, w: scene.lr(i))
    return path


def test_a_file_run_reuses_tiles_and_keeps_every_frame(tmp_path):
    clip = _static_clip(tmp_path / "static.mkv")
    options = {"model": "espcn", "scale": 2, "backend": "torch", "codec": "ffv1"}  # lossless: frames compare exactly
    on = upscale_video(clip, tmp_path / "on.mkv", RunConfig.from_options(reuse="on", **options))
    off = upscale_video(clip, tmp_path / "off.mkv", RunConfig.from_options(reuse="off", **options))
    assert on.frames_in == on.frames_out == off.frames_out == 60
    r = on.extra["reuse"]
    assert r["frames"] == 60 and r["whole_frames"] >= 1 and r["network_pixels_saved"] > 1.5
    assert "reuse" not in off.extra
    t_on, imgs_on, _ = read_video(tmp_path / "on.mkv")
    t_off, imgs_off, _ = read_video(tmp_path / "off.mkv")
    assert t_on == t_off and imgs_on[0].shape == (240, 320, 3)
    np.testing.assert_array_equal(imgs_on[0], imgs_off[0])  # the first frame runs whole either way
    psnr = [10 * np.log10(255**2 / max(np.mean((a.astype(float) - b) ** 2), 1e-9))
            for a, b in zip(imgs_on, imgs_off, strict=True)]
    assert min(psnr) > 30


def test_progress_and_metrics_show_reuse():
    counters = ReuseCounters()
    for fraction in (1.0, 0.1, 0.2, 0.1):
        counters.add(fraction, int(fraction * 1000), 1000, "refresh" if fraction == 1.0 else None)
    snap = JobSnapshot(name="gate", state="running", frames_in=4, frames_out=4, dropped=0, reconnects=0,
                       connect_failures=0, total=None, elapsed=1.0, latency={"p50_ms": None, "p95_ms": None,
                                                                           "max_ms": None, "frames": 0},
                       reuse=counters.summary())
    text = render_metrics([snap, dataclasses.replace(snap, name="plain", reuse=None)])
    assert 'streamsr_reuse_frames_total{camera="gate"} 4' in text
    assert 'streamsr_reuse_recomputed_ratio{camera="gate"} 0.35' in text
    assert 'streamsr_reuse_network_pixels_saved_ratio{camera="gate"} 2.857' in text  # 4000 / 1400
    assert 'camera="plain"' not in "".join(line for line in text.splitlines() if "reuse" in line)
    from streamsr.cli.run import _Progress

    assert "tiles 35% (p95 " in _Progress._line(snap)


def test_live_static_camera_reuses_tiles(rtsp_server, tmp_path):
    server = rtsp_server()  # a ball moving over a still background
    stats = upscale_video(server.url(), tmp_path / "cam.mkv",
                          RunConfig(model="espcn", scale=2, max_latency=30.0), stop_after=40)
    r = stats.extra["reuse"]
    assert stats.realtime and stats.frames_out + stats.dropped == 40
    assert r["on"] and r["frames"] == stats.frames_out  # on by default for a live input, never probed off
    assert r["network_pixels_saved"] > 1.5 and r["refreshes"] >= 1


@pytest.mark.parametrize("name", ["liif", "lte"])
def test_any_scale_models_reuse_tiles_of_their_query_tables(name):
    from streamsr.models.inputs import InputAssembler
    from streamsr.pipeline.stages import Telling

    variant = get_model(name).variant(None)
    backend = create_backend("onnxruntime", variant, device="cpu")
    h, w, big = 120, 160, (300, 400)  # x2.5
    extra = InputAssembler(variant.inputs).arrays(Telling(0, 0).conditions([None]), h, w, big)
    reuse, net = _reuse(backend, core=64, overlap=16, scene_cut=1.0)
    reuse(_chw(texture_pattern(0, h, w)), extra, 0.0, False)
    other = _chw(texture_pattern(3, h, w))[:, ::-1].copy()
    out = reuse(other, extra, 0.04, False)
    assert net.calls >= 2 and net.pixels == h * w + 2 * 3 * 96 * 96  # 2 x 3 windows of 96, in batches by shape
    np.testing.assert_allclose(out, backend.infer(other[None], extra)[0], atol=1e-4)


def test_the_hub_never_batches_tiles_whose_query_tables_differ():
    from streamsr.pipeline.hub import InferenceHub

    liif = get_model("liif").variant(None)
    image = np.zeros((1, 3, 96, 96), dtype=np.float32)
    table = np.zeros((1, 15, 160, 1), dtype=np.float32)
    shifted = table.copy()
    shifted[:, 0] += 1  # another tile's LR rows

    def key(variant, extra):
        return InferenceHub._key((variant, False, image, extra, None))

    assert key(liif, {"rows": table}) == key(liif, {"rows": table.copy()})  # same table: one call
    assert key(liif, {"rows": table}) != key(liif, {"rows": shifted})
    udvd = get_model("udvd").variant(2)  # per-frame maps batch whatever their values
    maps = np.zeros((1, 16, 96, 96), dtype=np.float32)
    assert key(udvd, {"degradation": maps}) == key(udvd, {"degradation": maps + 1})


@pytest.mark.parametrize("name", ["espcn", "udvd"])
def test_a_declared_halo_is_enough_context(name):
    """Tiles with the model's declared halo of context give the whole frame's output to within half
    an 8-bit level (exactly, for ESPCN's bounded receptive field)."""
    from streamsr.backends.tiling import TiledBackend
    from streamsr.models.inputs import InputAssembler
    from streamsr.pipeline.stages import Telling

    spec = get_model(name)
    variant = spec.variant(2)
    backend = create_backend("torch", variant, device="cpu")
    h, w = 96, 128
    x = _noisy(_chw(texture_pattern(0, h, w)), 5.0, 0)[None]
    extra = InputAssembler(variant.inputs).arrays(Telling(1.0, 5.0).conditions([None]), h, w, (2 * h, 2 * w))
    whole = backend.infer(x, extra)
    tiled = TiledBackend(backend, 32 + 2 * spec.halo, spec.halo).infer(x, extra)
    assert np.abs(tiled - whole).max() < (1e-5 if name == "espcn" else 0.5 / 255)
