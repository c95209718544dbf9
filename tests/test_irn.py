"""IRN: exact invertibility, the two parts, the receiver's latent, the loss, and `streamsr downscale`
with `streamsr run` as a pair through the whole pipeline."""

import itertools

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import OPENCV_DATA, SAMPLE
from media import audio_packets, make_video, read_video
from safetensors.torch import save_file

from streamsr.cli import main
from streamsr.errors import ConfigError
from streamsr.models import get_model
from streamsr.models.inputs import InputAssembler
from streamsr.models.irn import IRN, Haar, irn_loss, quantize


def _randomized(scale: int, **kwargs) -> IRN:
    """A network whose blocks do something (their last convolutions start at zero); the shipped
    variant's size unless kwargs say otherwise."""
    model = get_model("irn").build(scale, **kwargs)
    g = torch.Generator().manual_seed(scale)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_haar_is_exactly_invertible_and_its_first_channels_are_the_means():
    x = torch.rand(2, 3, 8, 12, dtype=torch.float64)
    haar = Haar(3).double()
    y = haar(x)
    assert y.shape == (2, 12, 4, 6)
    torch.testing.assert_close(y[:, :3], torch.nn.functional.avg_pool2d(x, 2))  # low-pass first
    torch.testing.assert_close(haar.inverse(y), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_the_network_is_exactly_invertible_in_float64(scale):
    model = _randomized(scale, blocks=3, growth=8).double()
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 3 * scale * scale, 16 // scale, 24 // scale)  # the LR image, then z
        assert float((y[:, 3:]).abs().max()) > 1e-3  # a non-trivial z
        torch.testing.assert_close(model.inverse(y), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_the_parts_share_the_network_and_the_receiver_uses_a_zero_latent(scale):
    spec = get_model("irn")
    model = _randomized(scale)
    down, up = model.down, model.up
    assert set(dict(down.named_parameters())) == set(dict(model.named_parameters()))  # no copies
    assert [i.name for i in spec.variant(scale, "down").inputs] == ["image"]
    z_input = spec.variant(scale, "up").inputs[1]
    assert (z_input.name, z_input.channels, z_input.role, z_input.grid) == ("z", 3 * (scale**2 - 1), "latent", "lr")
    z = InputAssembler(spec.variant(scale, "up").inputs).arrays([None], 6, 8)["z"]
    assert z.shape == (1, 3 * (scale**2 - 1), 6, 8) and not z.any()
    x = torch.rand(1, 3, 6 * scale, 8 * scale)
    with torch.no_grad():
        full = model(x)
        torch.testing.assert_close(down(x), full[:, :3])
        torch.testing.assert_close(up(full[:, :3], full[:, 3:]), x, atol=1e-4, rtol=0)


def test_quantize_is_eight_bit_with_a_straight_through_gradient():
    x = torch.tensor([-0.2, 0.1234, 0.5, 1.3], requires_grad=True)
    q = quantize(x)
    torch.testing.assert_close(q.detach(), torch.tensor([0.0, round(0.1234 * 255) / 255, 128 / 255, 1.0]))
    q.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4))


def test_the_loss_trains_both_directions():
    model = _randomized(2, blocks=2, growth=8)
    hr = torch.rand(2, 3, 16, 16)
    lr = torch.nn.functional.avg_pool2d(hr, 2)
    loss = irn_loss(model, [lr], hr)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("irn") / "irn_x2.safetensors"
    save_file({k: v.contiguous() for k, v in _randomized(2).state_dict().items()}, str(path))
    return path


BT709, LIMITED = 1, 1


def test_downscale_then_run_is_a_pair_through_the_pipeline(tmp_path, random_weights):
    """Frame count, timestamps, sizes, audio and colour tags through `downscale` and back."""
    src = make_video(tmp_path / "in.mp4", frames=8, size=(64, 48), audio="aac", colorspace=BT709, color_range=LIMITED)
    small, big = tmp_path / "small.mkv", tmp_path / "big.mkv"
    runner = CliRunner()
    sent = runner.invoke(main, ["downscale", str(src), "-o", str(small), "--scale", "2", "--weights",
                                str(random_weights), "--quiet"])
    assert sent.exit_code == 0, sent.output
    got = runner.invoke(main, ["run", str(small), "-o", str(big), "--model", "irn", "--scale", "2", "--weights",
                               str(random_weights), "--quiet"])
    assert got.exit_code == 0, got.output
    pts_in, _, tb_in = read_video(src)
    for path, size in ((small, (24, 32)), (big, (48, 64))):
        pts, imgs, tb = read_video(path)
        assert [p * tb for p in pts] == [p * tb_in for p in pts_in] and imgs[0].shape[:2] == size
        assert audio_packets(path) == audio_packets(src)
        with av.open(str(path)) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.colorspace, cc.color_range) == (BT709, LIMITED)


def test_downscale_without_a_down_part_is_the_plain_area_downscale(tmp_path):
    src = make_video(tmp_path / "in.mkv", frames=3, size=(64, 48), codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "plain.mkv"
    result = CliRunner().invoke(main, ["downscale", str(src), "-o", str(out), "--model", "espcn", "--scale", "2",
                                       "--codec", "ffv1", "--pix-fmt", "bgr0"])
    assert result.exit_code == 0, result.output
    assert "espcn has no down part: a plain area downscale" in result.output
    _, frames, _ = read_video(src)
    _, small, _ = read_video(out)
    want = frames[0].reshape(24, 2, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert small[0].shape == (24, 32, 3) and np.abs(small[0] - want).max() <= 1.0


@pytest.mark.parametrize("args,message", [
    (["--scale", "3"], "does not support scale 3; supported: 2, 4"),
    (["--size", "32x24"], "runs at its own factors; use --scale, not --size"),
    (["--model", "area", "--scale", "5"], "does not support scale 5"),
])
def test_downscale_refuses_what_makes_no_sense(tmp_path, args, message):
    src = make_video(tmp_path / "in.mp4", frames=2, size=(64, 48))
    result = CliRunner().invoke(main, ["downscale", str(src), "-o", str(tmp_path / "o.mp4"), *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output


def test_a_down_part_needs_sides_divisible_by_its_factor(tmp_path, random_weights):
    src = make_video(tmp_path / "in.mp4", frames=2, size=(66, 48))
    result = CliRunner().invoke(main, ["downscale", str(src), "-o", str(tmp_path / "o.mp4"), "--scale", "4",
                                       "--weights", str(random_weights)])
    assert result.exit_code == 1 and "needs sides divisible by 4; got 66x48" in result.output
    with pytest.raises(ConfigError, match="needs sides divisible by 2"):
        get_model("irn").geometry.resolve(__import__("streamsr").models.ScaleRequest(scale=2, part="down"), 65, 48)


def test_compression_aware_loss_sends_the_lr_through_a_real_codec():
    """Stage 2: the LR goes through libx264 and back (a straight-through gradient), so the loss
    is what the receiver sees on the wire; the down part still gets gradients."""
    from streamsr.degradation.codec import codec_round_trip
    from streamsr.models.irn import through_codec

    lr = torch.rand(2, 3, 16, 16, requires_grad=True)
    sent = through_codec(lr, "libx264", (40, 40))
    direct = codec_round_trip((lr.detach() * 255).round().byte().permute(0, 2, 3, 1).numpy(), crf=40, intra=True)
    torch.testing.assert_close(sent.detach(), torch.from_numpy(direct.frames).permute(0, 3, 1, 2).float() / 255)
    assert float((sent.detach() - lr.detach()).abs().mean()) > 0.01  # crf 40 changes the picture
    sent.sum().backward()
    torch.testing.assert_close(lr.grad, torch.ones_like(lr))
    model = _randomized(2, blocks=2, growth=8)
    hr = torch.rand(2, 3, 32, 32)
    loss = irn_loss(model, [torch.nn.functional.avg_pool2d(hr, 2)], hr, codec="libx264", crf=(18, 33))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_the_bit_cost_follows_what_the_codec_spends():
    """The rate term's stand-in ranks pictures as libx264 does (flat < a photo < the photo with
    noise), costs nothing for a flat picture, and passes gradients to the LR."""
    from streamsr.degradation.codec import codec_round_trip
    from streamsr.evaluate import load_rgb
    from streamsr.metrics import downscale
    from streamsr.models.irn import bit_cost

    photo = downscale(load_rgb(SAMPLE), 2)[:96, :128]  # the bundled clip's first frame
    noisy = np.clip(photo.astype(int) + np.random.default_rng(0).integers(-20, 21, photo.shape), 0, 255).astype(np.uint8)
    flat = np.full_like(photo, 90)
    pictures = [flat, photo, noisy]
    costs = [float(bit_cost(torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255)) for p in pictures]
    bits = [codec_round_trip(p[None], codec="libx264", crf=23, intra=True).bits for p in pictures]
    assert costs[0] < 1e-4 and costs[0] < costs[1] < costs[2]
    assert bits[0] < bits[1] < bits[2]
    lr = (torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255).requires_grad_()
    bit_cost(lr).backward()
    assert float(lr.grad.abs().sum()) > 0
    model = _randomized(2, blocks=2, growth=8)
    hr = torch.rand(2, 3, 32, 32)
    plain = irn_loss(model, [torch.nn.functional.avg_pool2d(hr, 2)], hr, z_scale=0.0)
    with_rate = irn_loss(model, [torch.nn.functional.avg_pool2d(hr, 2)], hr, z_scale=0.0, rate=0.1)
    assert float(with_rate.detach()) > float(plain.detach())


@pytest.mark.rtsp
def test_the_pair_over_a_live_rtsp_stream(rtsp_server, tmp_path, random_weights):
    """The sender reads a live camera, downscales with IRN and pushes the small stream to an RTSP
    server; the receiver restores what the server recorded. (Without real-time drops, so that what
    arrives does not depend on how fast this machine runs IRN.)"""
    import time

    from streamsr import RunConfig, SinkConfig, upscale_video

    camera, relay = rtsp_server(), rtsp_server(record_dir=tmp_path)
    push = SinkConfig(live=True, preset="veryfast", tune="zerolatency", gop=5)  # what real-time mode would pick
    sent = upscale_video(camera.url(), relay.url("push"), RunConfig(model="irn", part="down", scale=2, realtime=False,
                                                                    sink=push, weights=str(random_weights)),
                         stop_after=20)
    assert sent.frames_in == sent.frames_out == 20
    assert (sent.extra["output"]["width"], sent.extra["output"]["height"]) == (160, 120)
    frames, want = [], 10
    deadline = time.monotonic() + 60  # the relay writes what it received in its own time
    while len(frames) < want and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            with av.open(str(tmp_path / "push.ts")) as c:
                frames = list(c.decode(video=0))
        except (av.FFmpegError, FileNotFoundError):
            frames = []
    assert len(frames) >= want and (frames[0].width, frames[0].height) == (160, 120)
    back = upscale_video(tmp_path / "push.ts", tmp_path / "big.mkv",
                         RunConfig(model="irn", scale=2, weights=str(random_weights)))
    pts, imgs, _ = read_video(tmp_path / "big.mkv")
    assert back.frames_out == len(imgs) >= want and imgs[0].shape[:2] == (240, 320)
    assert all(b > a for a, b in itertools.pairwise(pts))


#: what the shipped CPU-trained weights reach on the test's photos (MODELS.md has the full tables)
SHIPPED_GAIN = {2: 4.0, 4: 3.0}
#: the LR's Y-PSNR against a bicubic downscale (the issue's "watchable": 35 dB at x2)
SHIPPED_LR = {2: 35.0, 4: 35.0}


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.skipif(not (OPENCV_DATA / "building.jpg").exists(), reason="opencv-doc not installed (CI installs it)")
def test_shipped_weights_restore_more_than_bicubic_and_send_a_watchable_lr(scale):
    """Validation photos (opencv-doc): the round trip through the shipped pair's 8-bit LR beats
    bicubic down and up, and the LR the sender sends stays close to a bicubic downscale."""
    from streamsr.evaluate import ModuleBackend, Upscaler, load_rgb, score_round_trip
    from streamsr.models import build_model

    model, spec = build_model("irn", scale), get_model("irn")
    down, up = (Upscaler(ModuleBackend(getattr(model, p), spec.variant(scale, p))) for p in ("down", "up"))
    scores = [score_round_trip(down, up, load_rgb(OPENCV_DATA / name)[:256, :256], scale, name)
              for name in ("building.jpg", "fruits.jpg", "baboon.jpg")]
    assert np.mean([s.gain for s in scores]) > SHIPPED_GAIN[scale], scores
    assert np.mean([s.psnr_lr for s in scores]) > SHIPPED_LR[scale], scores


def test_codec_weights_are_named_and_other_names_are_refused(tmp_path):
    from streamsr.errors import WeightsError
    from streamsr.models.registry import resolve_weights, shipped_alternatives

    irn = get_model("irn")
    assert set(shipped_alternatives(irn, 2)) == set(shipped_alternatives(irn, 4)) == {"codec"}
    assert resolve_weights(irn, 2, "codec") == shipped_alternatives(irn, 2)["codec"]
    assert resolve_weights(irn, 4, "codec").name == "irn_x4-codec.safetensors"
    assert resolve_weights(irn, 2, None) is None
    mine = tmp_path / "mine.safetensors"
    assert resolve_weights(irn, 2, mine) == mine  # a file (even one still to be checked) stays a file
    with pytest.raises(WeightsError, match=r"--weights paper: no such file, and irn_x4 ships no weights named"):
        resolve_weights(irn, 4, "paper")
    with pytest.raises(WeightsError, match=r"irn_x2 ships no weights named 'lossless' \(it ships: codec\)"):
        resolve_weights(irn, 2, "lossless")
    with pytest.raises(WeightsError, match="espcn_x2 ships no weights named"):
        resolve_weights(get_model("espcn"), 2, "codec")


@pytest.mark.skipif(not (OPENCV_DATA / "building.jpg").exists(), reason="opencv-doc not installed (CI installs it)")
def test_codec_weights_restore_more_through_libx264_and_keep_the_lr_watchable():
    """Validation photos through a real codec (libx264 intra, crf 23) on the wire: the pair trained
    through the codec with a rate term (`--weights codec`) restores more than the default pair,
    without costing more bits, and its LR stays watchable (MODELS.md has the clips' tables)."""
    from streamsr.degradation.codec import codec_round_trip
    from streamsr.evaluate import ModuleBackend, Upscaler, load_rgb, score_round_trip
    from streamsr.models import build_model

    spec, got, bits = get_model("irn"), {}, {}
    photos = [load_rgb(OPENCV_DATA / n)[:256, :256] for n in ("building.jpg", "fruits.jpg", "baboon.jpg")]
    for weights in (None, "codec"):
        model = build_model("irn", 2, weights=weights)
        down, up = (Upscaler(ModuleBackend(getattr(model, p), spec.variant(2, p))) for p in ("down", "up"))
        sent = []

        def wire(lr, sent=sent):
            coded = codec_round_trip(lr[None], crf=23, intra=True)
            sent.append(coded.bits)
            return coded.frames[0]

        got[weights] = [score_round_trip(down, up, hr, 2, through=wire) for hr in photos]
        bits[weights] = sum(sent[::2])  # the pair's LR (the bicubic LR goes through the wire after it)
    gain = np.mean([s.psnr for s in got["codec"]]) - np.mean([s.psnr for s in got[None]])
    assert gain > 0.25, (got, bits)  # measured: +0.31 dB (+0.07, +0.35, +0.52) at 4 % fewer bits
    assert bits["codec"] < 1.05 * bits[None], bits
    assert np.mean([s.psnr_lr for s in got["codec"]]) > SHIPPED_LR[2], got


@pytest.mark.skipif(not (OPENCV_DATA / "building.jpg").exists(), reason="opencv-doc not installed (CI installs it)")
def test_x4_codec_weights_restore_more_on_a_thin_link():
    """x4 `--weights codec` (trained through libx264 with a heavier rate term) on short pans over
    validation photos through libx264 at crf 33, a thin link: about the default pair's bits and
    more restored; its LR stays watchable (MODELS.md has the clips' tables and where it loses:
    crf 18-23 on these small crops)."""
    from streamsr.degradation.codec import codec_round_trip
    from streamsr.evaluate import ModuleBackend, Upscaler, load_rgb
    from streamsr.metrics import downscale, psnr_y
    from streamsr.models import build_model

    spec = get_model("irn")
    pans = [np.stack([p[:192, 2 * k : 2 * k + 256] for k in range(8)])
            for p in (load_rgb(OPENCV_DATA / n) for n in ("building.jpg", "fruits.jpg", "baboon.jpg"))]
    bits, restored, lr_psnr = {}, {}, {}
    for weights in (None, "codec"):
        model = build_model("irn", 4, weights=weights)
        down, up = (Upscaler(ModuleBackend(getattr(model, p), spec.variant(4, p))) for p in ("down", "up"))
        bits[weights], scores, lr_scores = 0, [], []
        for pan in pans:
            lr = np.stack([down(f) for f in pan])
            lr_scores += [psnr_y(a, downscale(f, 4)) for a, f in zip(lr, pan)]
            sent = codec_round_trip(lr, crf=33, fps=25)
            bits[weights] += sent.bits
            scores += [psnr_y(up(f), hr, 4) for f, hr in zip(sent.frames, pan)]
        restored[weights], lr_psnr[weights] = np.mean(scores), np.mean(lr_scores)
    # measured: 0.3-0.5 % fewer bits (26,840-26,864 against 26,944-26,984; x264's threads move it)
    assert bits["codec"] < 1.02 * bits[None], bits
    assert restored["codec"] - restored[None] > 0.15, restored  # measured: +0.26 dB (23.54 against 23.28)
    assert lr_psnr["codec"] > SHIPPED_LR[4], lr_psnr
