"""Device colour conversion (streamsr.colour) against swscale, and the device colour chain of a run
(`--colour-on device`), checked on the CPU against the swscale chain."""

import json

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLE
from media import make_video, moving_pattern, read_video

from streamsr import RunConfig
from streamsr.cli import main
from streamsr.colour import rgb_to_yuv420, yuv420_to_rgb
from streamsr.errors import ConfigError
from streamsr.frames import BT601, BT709, RANGE_FULL, RANGE_LIMITED, ColourTags
from streamsr.metrics import psnr
from streamsr.pipeline.job import upscale_video
from streamsr.swscale import SWS_FLAGS, from_planar, from_rgb, sws_colorspace, to_planar, to_rgb

COLOURS = [ColourTags(BT601, RANGE_LIMITED), ColourTags(BT709, RANGE_LIMITED), ColourTags(BT709, RANGE_FULL),
           ColourTags(9, RANGE_LIMITED)]



@pytest.fixture(scope="module")
def natural_frame() -> av.VideoFrame:
    with av.open(str(SAMPLE)) as c:
        return next(c.decode(video=0))


def swscale_yuv420(rgb: np.ndarray, colour: ColourTags) -> np.ndarray:
    cs = sws_colorspace(colour.matrix)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", src_colorspace=cs, dst_colorspace=cs, src_color_range=RANGE_FULL,
        dst_color_range=colour.range, interpolation=SWS_FLAGS).to_ndarray()


def to_uint8(chw: torch.Tensor) -> np.ndarray:
    return (chw.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def flat_blocks() -> np.ndarray:
    """64x64 RGB: 16 flat 16x16 blocks of saturated and grey colours."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 0, 0),
               (255, 255, 255), (128, 128, 128), (200, 30, 90), (20, 160, 220), (250, 200, 150), (60, 40, 20),
               (16, 235, 128), (90, 90, 240), (180, 250, 60)]
    img = np.zeros((64, 64, 3), np.uint8)
    for k, c in enumerate(colours):
        img[16 * (k // 4): 16 * (k // 4 + 1), 16 * (k % 4): 16 * (k % 4 + 1)] = c
    return img


@pytest.mark.parametrize("colour", COLOURS, ids=lambda c: f"m{c.matrix}r{c.range}")
def test_yuv_to_rgb_matches_swscale(natural_frame, colour):
    mine = to_uint8(yuv420_to_rgb(torch.from_numpy(natural_frame.to_ndarray())[None], colour)[0])
    ref = to_rgb(natural_frame, colour)
    assert psnr(mine, ref) > 45  # they differ only in chroma interpolation (linear vs bicubic) at edges
    # flat colour: the matrix and range maths themselves, block interiors within 2 code values
    rgb = flat_blocks()
    planes = torch.from_numpy(swscale_yuv420(rgb, colour))[None]
    back = to_uint8(yuv420_to_rgb(planes, colour)[0]).astype(int)
    inner = np.zeros((64, 64), bool)
    for by in range(4):
        for bx in range(4):
            inner[16 * by + 5: 16 * by + 11, 16 * bx + 5: 16 * bx + 11] = True  # clear of chroma filters
    assert np.abs(back - rgb.astype(int))[inner].max() <= 2


@pytest.mark.parametrize("colour", COLOURS, ids=lambda c: f"m{c.matrix}r{c.range}")
def test_planar_conversions_give_the_interleaved_ones_pixels(natural_frame, colour):
    """The CPU chain converts straight between planar float RGB and the frame (no transposed
    copy): every pixel must be what the interleaved path gives, whatever the format and size."""
    rgb = to_rgb(natural_frame, colour)
    chw = to_planar(natural_frame, colour)
    assert chw.dtype == np.float32 and chw.shape == (3, *rgb.shape[:2])
    assert np.array_equal(chw, rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255))
    # a network's output: beyond [0, 1] at places, off the 8-bit grid everywhere
    out = np.random.default_rng(0).normal(chw, 0.02).astype(np.float32)
    out[0, :4, :4], out[1, :4, :4] = -0.3, 1.4
    hwc = np.clip(out.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    for pix_fmt, size in [("yuv420p", None), ("yuv444p", None), ("yuv420p10le", None), ("nv12", None),
                          ("rgb24", None), ("yuv420p", (w * 2 - 2, h * 2)), ("yuv420p", (w // 2, h // 2))]:
        mine = from_planar(out, pix_fmt, colour, size)
        ref = from_rgb(hwc, pix_fmt, colour, size)
        assert (mine.format.name, mine.width, mine.height) == (ref.format.name, ref.width, ref.height)
        assert np.array_equal(mine.to_ndarray(), ref.to_ndarray()), (pix_fmt, size)


def test_planar_output_in_bands_gives_the_interleaved_pixels():
    """from_planar clamps and rounds a large frame band by band (rows that fit the cache): frames
    of several bands, the last one short, give exactly what the interleaved path gives."""
    out = np.random.default_rng(1).normal(0.5, 0.4, (3, 301, 1000)).astype(np.float32)  # 131 rows a band
    hwc = np.clip(out.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    for colour in COLOURS:
        mine, ref = from_planar(out, "yuv444p", colour), from_rgb(hwc, "yuv444p", colour)
        assert np.array_equal(mine.to_ndarray(), ref.to_ndarray())
    assert np.array_equal(from_planar(out, "rgb24", COLOURS[0]).to_ndarray(), hwc)


def test_the_wrong_matrix_is_measurably_off():
    rgb = flat_blocks()
    planes = torch.from_numpy(swscale_yuv420(rgb, COLOURS[0]))[None]
    wrong = to_uint8(yuv420_to_rgb(planes, COLOURS[1])[0])
    assert np.abs(wrong.astype(int) - rgb.astype(int)).max() > 10


@pytest.mark.parametrize("colour", COLOURS, ids=lambda c: f"m{c.matrix}r{c.range}")
def test_rgb_to_yuv_matches_swscale(natural_frame, colour):
    rgb = to_rgb(natural_frame, colour)
    ref = swscale_yuv420(rgb, colour)
    mine = rgb_to_yuv420(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0, colour)[0].numpy()
    assert mine.shape == ref.shape and mine.dtype == np.uint8
    h = rgb.shape[0]
    assert np.abs(mine[:h].astype(int) - ref[:h]).max() <= 1  # luma: the same maths, rounding apart
    assert psnr(mine[h:], ref[h:]) > 45  # chroma: subsampling filters differ slightly
    # batch of frames with one per-frame colour each: the same as one at a time
    two = torch.stack([torch.from_numpy(natural_frame.to_ndarray())] * 2)
    both = yuv420_to_rgb(two, [COLOURS[0], colour])
    assert torch.allclose(both[1], yuv420_to_rgb(two[1:], colour)[0], atol=1e-6)


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even sizes"):
        rgb_to_yuv420(torch.zeros(1, 3, 5, 4), COLOURS[0])


def _planes(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray() for f in c.decode(video=0)]


def assert_same_pictures(a_path, b_path, height: int, luma_db: float = 45, chroma_db: float = 30) -> None:
    """Luma nearly equal; chroma within what linear vs bicubic chroma filters make of this
    synthetic pattern's sharp colour edges (natural video agrees far closer, see above)."""
    for a, b in zip(_planes(a_path), _planes(b_path), strict=True):
        assert psnr(a[:height], b[:height]) > luma_db
        assert psnr(a[height:], b[height:]) > chroma_db


@pytest.mark.parametrize("model,extra", [("espcn", {}), ("udvd", {"batch_size": 3})])
def test_device_chain_matches_swscale_chain(tmp_path, model, extra):
    """The whole run with --colour-on device (here on the CPU) against the swscale chain: same
    frames, timestamps and tags, pictures within chroma-filter differences, same noise estimate."""
    def noisy(i, h, w):  # a sensor's noise (σ 8), so that the estimate is more than rounding
        rng = np.random.default_rng(i)
        return np.clip(moving_pattern(i, h, w) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)

    src = make_video(tmp_path / "in.mp4", frames=7, size=(96, 64), audio="aac", image=noisy, options={"crf": "8"})
    runs = {}
    for where in ("cpu", "device"):
        cfg = RunConfig.from_options(model=model, scale=2, backend="torch", colour_on=where, codec="ffv1", **extra)
        stats = upscale_video(src, tmp_path / f"{where}.mkv", cfg)
        runs[where] = (stats, read_video(tmp_path / f"{where}.mkv"))
    (cpu_stats, (cpu_pts, cpu_imgs, _)), (dev_stats, (dev_pts, dev_imgs, _)) = runs["cpu"], runs["device"]
    assert dev_stats.frames_out == cpu_stats.frames_out == 7 and dev_pts == cpu_pts
    assert (cpu_stats.extra["colour_on"], dev_stats.extra["colour_on"]) == ("cpu", "device")
    assert len(cpu_imgs) == len(dev_imgs) == 7
    assert_same_pictures(tmp_path / "cpu.mkv", tmp_path / "device.mkv", 128)
    with av.open(str(tmp_path / "device.mkv")) as c:
        s = c.streams.video[0].codec_context
        assert (s.pix_fmt, s.width, s.height) == ("yuv420p", 192, 128)
        assert c.streams.audio  # audio still copied
    if model == "udvd":
        cpu_sigma = cpu_stats.extra["degradation"]["noise_estimated"]
        dev_sigma = dev_stats.extra["degradation"]["noise_estimated"]
        assert cpu_sigma > 3 and dev_sigma == pytest.approx(cpu_sigma, rel=0.05)


def test_device_chain_repacks_other_formats(tmp_path):
    """4:2:2 input into a 4:2:0 output: the planes stage repacks with swscale, tags kept."""
    src = make_video(tmp_path / "in.mkv", frames=4, size=(64, 48), codec="ffv1", pix_fmt="yuv422p",
                     colorspace=BT709, color_range=RANGE_FULL)
    for where in ("cpu", "device"):
        cfg = RunConfig.from_options(scale=2, backend="torch", colour_on=where, codec="ffv1", pix_fmt="yuv420p")
        upscale_video(src, tmp_path / f"{where}.mkv", cfg)
        with av.open(str(tmp_path / f"{where}.mkv")) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.colorspace, cc.color_range) == (BT709, RANGE_FULL)
    # the model sees 4:2:0 chroma instead of 4:2:2 here: further apart than above, still close
    assert_same_pictures(tmp_path / "cpu.mkv", tmp_path / "device.mkv", 96, luma_db=40, chroma_db=25)


def test_where_colour_is_converted(tmp_path, small_clip):
    # auto on the CPU keeps swscale; device where it can't be done is a clear error
    from streamsr.pipeline.device_stages import DeviceInferStage
    from streamsr.pipeline.stages import ToTensorStage

    stats = upscale_video(small_clip, tmp_path / "a.mp4", RunConfig.from_options(scale=2, backend="torch"))
    assert stats.extra["colour_on"] == "cpu" and stats.frames_out == 12
    with pytest.raises(ConfigError, match="onnxruntime backend works on host arrays"):
        upscale_video(small_clip, tmp_path / "b.mp4", RunConfig.from_options(backend="onnxruntime",
                                                                             colour_on="device"))
    # tiling forwards the device tensors of the backend it wraps: the device chain stays
    tiled = upscale_video(small_clip, tmp_path / "c.mp4", RunConfig.from_options(backend="torch", tile=40,
                                                                                 tile_overlap=8, colour_on="device"))
    assert tiled.extra["colour_on"] == "device" and tiled.frames_out == 12
    with pytest.raises(ConfigError, match="yuv444p is not 8-bit 4:2:0"):
        upscale_video(small_clip, tmp_path / "d.mkv", RunConfig.from_options(backend="torch", colour_on="device",
                                                                             codec="ffv1", pix_fmt="yuv444p"))
    from streamsr.backends import load_backend
    from streamsr.io.sink import Sink
    from streamsr.io.source import Source
    from streamsr.machine import Machine
    from streamsr.models import get_model
    from streamsr.pipeline.job import build_stages
    from streamsr.pipeline.plan import plan_run, plan_source

    for where, kind in (("auto", ToTensorStage), ("device", DeviceInferStage)):
        cfg = RunConfig.from_options(backend="torch", colour_on=where)
        backend = load_backend(cfg, get_model("espcn").variant(2))
        try:
            with Source(small_clip) as src, Sink(tmp_path / f"{where}.mp4", src.info, 128, 96, cfg.sink) as sink:
                plan = plan_run(cfg, src.info, tmp_path / f"{where}.mp4", plan_source(cfg, small_clip, Machine()),
                                backend)
                stages = build_stages(plan, backend, sink)
        finally:
            backend.close()
        assert any(isinstance(s, kind) for s in stages)
    r = CliRunner().invoke(main, ["run", str(small_clip), "-o", str(tmp_path / "e.mp4"), "--colour-on", "device",
                                  "--backend", "torch", "-q", "--stats-json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["frames_out"] == 12


def _tagged_clip(path, tag) -> None:
    """Six 64x48 x264 frames, the stream tagged by ``tag(stream)`` before the first frame."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        tag(vs)
        for i in range(6):
            vf = av.VideoFrame.from_ndarray(moving_pattern(i, 48, 64), format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_non_square_pixels_keep_the_picture_s_shape(tmp_path, ext):
    """Anamorphic SD (DV, DVD, broadcast: pixels 16:11, 64:45, ...): the output's pixels stretch
    as the input's did, x2 and to a --size of another shape (it came out with square pixels: a
    16:9 picture shown 4:3)."""
    from fractions import Fraction

    src = tmp_path / f"in.{ext}"
    _tagged_clip(src, lambda vs: setattr(vs.codec_context, "sample_aspect_ratio", Fraction(16, 11)))

    def shape(path):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return s.codec_context.width, s.codec_context.height, s.sample_aspect_ratio

    assert shape(src) == (64, 48, Fraction(16, 11))
    r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / f"x2.{ext}"), "-q"])
    assert r.exit_code == 0, r.output
    assert shape(tmp_path / f"x2.{ext}") == (128, 96, Fraction(16, 11))
    r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / f"wide.{ext}"), "--model", "lte", "--size", "128x48", "-q"])
    assert r.exit_code == 0, r.output
    assert shape(tmp_path / f"wide.{ext}") == (128, 48, Fraction(8, 11))  # the same 64:33 on screen


@pytest.mark.parametrize("angle", [-90, 180])
def test_a_phone_video_keeps_its_display_rotation(tmp_path, angle):
    """Phones store portrait video as landscape pixels and a display matrix; the output keeps the
    matrix, so players turn it as they did (it came out sideways)."""
    src = tmp_path / "phone.mp4"
    _tagged_clip(src, lambda vs: vs.set_display_rotation(angle))

    def rotation(path):
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            return frame.width, frame.height, round(frame.rotation) % 360

    assert rotation(src) == (64, 48, angle % 360)
    for ext in ("mp4", "mov"):
        r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / f"out.{ext}"), "-q"])
        assert r.exit_code == 0, r.output
        assert rotation(tmp_path / f"out.{ext}") == (128, 96, angle % 360)
