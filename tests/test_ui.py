"""The local pages: ``streamsr preview`` and the live dashboard of ``run --ui-port``.

Endpoints are tested with plain HTTP; the pages themselves in a real browser: Debian's Chromium
(``/usr/bin/chromium``) driven by Playwright, pointed at that executable (no browser download).
The browser tests are skipped only where that Chromium is absent (CI installs it). Every wait is
on a condition with a generous deadline; what is asserted is counted or compared pixel by pixel,
never a duration. With ``STREAMSR_UI_SCREENSHOTS=DIR`` the browser tests also save each page there.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import free_port
from media import make_video
from PIL import Image

from streamsr import RunConfig, upscale_video
from streamsr.cli import main
from streamsr.errors import ConfigError
from streamsr.frames import BT601, RANGE_LIMITED, ColourTags, Frame
from streamsr.io.source import Source
from streamsr.metrics import psnr_y, ssim_y
from streamsr.swscale import from_rgb, to_rgb
from streamsr.ui import Preview, Snapshots, dashboard_server, parse_listen, preview_server
from streamsr.ui.images import ByteLRU

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--force-color-profile=srgb"]
browser_test = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed here "
                                  "(apt-get install chromium chromium-driver; CI installs it)")
STREAMSR = [sys.executable, "-m", "streamsr.cli"]
WAIT_MS = 90_000  # browser waits: generous, whatever the machine's load
W, H = 80, 60  # the clip; x2 -> 160x120


def _detail(i: int, h: int, w: int) -> np.ndarray:
    """Fine detail near the Nyquist limit, different in every frame: bicubic and a network
    render it visibly differently."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 110 * np.sin(x * 1.3 + i * 0.7)
    g = ((x // 2 + y // 2 + i) % 2) * 220 + 15
    b = 128 + 110 * np.cos((x * y) / 17.0 + i)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("ui") / "detail.mp4", frames=10, size=(W, H), image=_detail)


@pytest.fixture(scope="module")
def session(clip):
    """ESPCN x2 against bicubic."""
    with Preview(clip, RunConfig(model="espcn", scale=2)) as preview:
        yield preview


@pytest.fixture
def served(session):
    with preview_server(session, port=0) as server:
        yield server


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _raw(port: int, method: str, path: str) -> tuple[int, bytes]:
    """A request sent as it is (no client-side normalising of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# -- the preview's endpoints ----------------------------------------------------------------------

def test_info_and_every_view_at_its_real_size(served):
    status, kind, body = _get(served.url + "api/info")
    info = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert info["input"] | {"frames": 10, "width": W, "height": H} == info["input"]
    assert info["sr"]["model"] == "espcn" and info["sr"]["geometry"] == "x2" and info["sr"]["out_size"] == [160, 120]
    assert info["sr"]["backend"] and info["other"]["label"] == "bicubic" and info["reference"] is None
    sizes = {"input": (H, W), "bicubic": (120, 160), "sr": (120, 160), "other": (120, 160), "compare": (120, 160)}
    for view, shape in sizes.items():
        status, kind, body = _get(served.url + f"frame/3?view={view}")
        assert (status, kind) == (200, "image/png") and _png(body).shape[:2] == shape, view
    side = _png(_get(served.url + "frame/3?view=compare&mode=side")[2])
    assert side.shape[:2] == (120, 320)


def test_compare_is_bicubic_left_of_the_wipe_and_the_model_right(served, session):
    bic, sr = session.image(4, "bicubic"), session.image(4, "sr")
    assert np.abs(bic.astype(int) - sr).mean() > 5  # visibly different renderings
    wiped = _png(_get(served.url + "frame/4?view=compare&at=0.25")[2])
    assert np.array_equal(wiped[:, :40], bic[:, :40]) and np.array_equal(wiped[:, 40:], sr[:, 40:])
    side = _png(_get(served.url + "frame/4?view=compare&mode=side")[2])
    assert np.array_equal(side[:, :160], bic) and np.array_equal(side[:, 160:], sr)


def test_unknown_paths_are_404_and_no_path_reaches_the_filesystem(served):
    port = served.port
    for path in ("/nope", "/frame/10", "/frame/-1", "/frame/abc", "/api/metrics/99", "/static/../pyproject.toml",
                 "/static/%2e%2e/%2e%2e/pyproject.toml", "/../../../etc/passwd", "/static/missing.js",
                 "/static/..%2fhttp.py", "//etc/passwd", "/frame/0/../../etc/passwd"):
        status, body = _raw(port, "GET", path)
        assert status == 404, path
        assert b"root:" not in body and b"[project]" not in body
    assert _raw(port, "GET", "/frame/0?view=../../etc/passwd")[0] == 400
    assert _raw(port, "GET", "/frame/0?view=compare&at=2")[0] == 400
    assert _raw(port, "GET", "/frame/0?view=compare&at=nan")[0] == 400
    assert _raw(port, "POST", "/api/info")[0] == 501  # read-only
    assert _raw(port, "DELETE", "/frame/0")[0] == 501
    status, body = _raw(port, "HEAD", "/")
    assert status == 200 and body == b""
    status, kind, body = _get(served.url + "static/preview.js")
    assert status == 200 and kind.startswith("text/javascript") and b"/frame/" in body
    status, kind, body = _get(served.url)
    assert status == 200 and kind.startswith("text/html") and b"/static/preview.js" in body
    assert b"http://" not in body and b"https://" not in body  # nothing from the network


def test_preview_frames_are_what_run_writes(clip, tmp_path):
    """Lossless output: each frame `run` wrote equals the preview's frame exactly (the preview
    shows each frame on its own, as a run without tile reuse makes it)."""
    config = RunConfig.from_options(model="espcn", scale=2, codec="ffv1")
    out = tmp_path / "run.mkv"
    upscale_video(clip, out, dataclasses.replace(config, reuse="off"))
    with Source(out, audio=False) as source:
        written = [to_rgb(f.image, f.colour) for f in source]
    with Preview(clip, dataclasses.replace(config, reuse="on")) as preview:  # the preview turns it off
        assert preview.sr.plan.reuse is None
        assert len(written) == preview.count == 10
        for n in (0, 7, 3):  # out of order: the reader decodes again from the start
            assert np.array_equal(preview.image(n, "sr"), written[n]), n


def test_reference_metrics_follow_the_basicsr_protocol(clip, tmp_path):
    ref = make_video(tmp_path / "hr.mp4", frames=10, size=(160, 120), image=_detail)
    with Preview(clip, RunConfig(model="espcn", scale=2), reference=ref) as preview, \
            preview_server(preview, port=0) as server:
        m = json.loads(_get(server.url + "api/metrics/6")[2])
        assert set(m["psnr"]) == set(m["ssim"]) == {"sr", "other"} and m["frame"] == 6
        assert m["sr_ms"] >= 0 and m["other_ms"] >= 0
        with Source(ref, audio=False) as source:
            hr = [to_rgb(f.image, f.colour) for f in source][6]
        assert m["psnr"]["sr"] == pytest.approx(psnr_y(preview.image(6, "sr"), hr, 2))
        assert m["psnr"]["other"] == pytest.approx(psnr_y(preview.image(6, "bicubic"), hr, 2))
        assert m["ssim"]["sr"] == pytest.approx(ssim_y(preview.image(6, "sr"), hr, 2))
        assert json.loads(_get(server.url + "api/info")[2])["reference"] == str(ref)
        with ThreadPoolExecutor(4) as pool:  # a page and a script asking at once: same answers
            answers = list(pool.map(lambda k: _get(server.url + f"api/metrics/{k % 3}")[2], range(12)))
        assert all(json.loads(a)["psnr"] == json.loads(answers[k % 3])["psnr"] for k, a in enumerate(answers))
    wrong = make_video(tmp_path / "wrong.mp4", frames=2, size=(120, 90))
    with pytest.raises(ConfigError, match="120x90.*160x120"):
        Preview(clip, RunConfig(model="espcn", scale=2), reference=wrong)


def test_metrics_without_a_reference_are_timings(served):
    status, _, body = _get(served.url + "api/metrics/2")
    m = json.loads(body)
    assert status == 200 and m["frame"] == 2 and m["sr_ms"] >= 0 and "psnr" not in m


def test_compare_with_another_model_and_sizes(clip):
    with Preview(clip, RunConfig(model="srresnet", scale=2), compare="espcn") as preview:
        info = preview.info()
        assert info["other"]["label"] == "espcn x2" and info["sr"]["label"] == "srresnet x2"
        assert not np.array_equal(preview.image(1, "other"), preview.image(1, "sr"))
        assert preview.image(1, "other").shape == (120, 160, 3)
    with Preview(clip, RunConfig(model="espcn", size=(150, 110)), compare="srresnet") as preview:
        # a fixed-factor model reaches an exact size as run does: its next factor, then Lanczos
        assert preview.info()["sr"]["geometry"] == "x2 -> 150x110"
        assert preview.image(0, "sr").shape == preview.image(0, "other").shape == (110, 150, 3)
    with pytest.raises(ConfigError, match="espcn:3 writes 240x180.*160x120"):
        Preview(clip, RunConfig(model="espcn", scale=2), compare="espcn:3")


def test_udvd_is_told_each_frames_noise(clip):
    with Preview(clip, RunConfig(model="udvd", scale=2)) as preview:
        assert "own noise estimate" in preview.info()["noise_note"]
        assert preview.metrics(0)["noise"] >= 0


def test_cache_is_bounded(clip):
    with Preview(clip, RunConfig(model="espcn", scale=2), cache_bytes=3 * 160 * 120 * 3) as preview:
        first = preview.image(0, "sr").copy()
        for n in range(1, 6):
            preview.image(n, "sr")
        assert preview._images.nbytes <= 3 * 160 * 120 * 3 and len(preview._images) <= 3
        assert np.array_equal(preview.image(0, "sr"), first)  # evicted, rendered again, the same
    lru = ByteLRU(10)
    lru.put("a", b"12345")
    lru.put("b", b"12345")
    lru.put("c", b"1")
    assert lru.get("a") is None and lru.get("b") == b"12345" and lru.nbytes == 6
    lru.put("huge", b"x" * 11)
    assert lru.get("huge") is None and lru.nbytes == 6


def test_listen_addresses():
    assert parse_listen("9000") == ("127.0.0.1", 9000)  # localhost unless a host is given
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("abc", "70000", "host:"):
        with pytest.raises(ConfigError, match="--ui-port"):
            parse_listen(bad)


# -- the command line -----------------------------------------------------------------------------

def _one_clear_line(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_errors_are_one_line(clip, tmp_path):
    run = lambda *a: CliRunner().invoke(main, list(map(str, a)))
    _one_clear_line(run("preview", tmp_path / "nope.mp4"), "not found")
    _one_clear_line(run("preview", "rtsp://admin:hunter2@10.0.0.1/s"), "video file", "rtsp://***@")
    _one_clear_line(run("preview", clip, "--port", "abc"), "--port")
    _one_clear_line(run("preview", clip, "--model", "espnc"), "espnc")
    _one_clear_line(run("preview", clip, "--compare", "espcn:x"), "--compare")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        _one_clear_line(run("preview", clip, "--port", f"127.0.0.1:{busy.getsockname()[1]}"), "cannot serve")
    _one_clear_line(run("run", clip, "-o", tmp_path / "o.mkv", "--ui-port", "x:y"), "--ui-port")


def _wait_for(url: str, proc: subprocess.Popen, deadline: float = 120) -> bytes:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_cli_preview_serves_until_stopped(clip):
    port = free_port()
    proc = subprocess.Popen([*STREAMSR, "preview", str(clip), "--model", "espcn", "--port", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(_wait_for(f"http://127.0.0.1:{port}/api/info", proc))
        assert info["input"]["frames"] == 10
        assert _png(_wait_for(f"http://127.0.0.1:{port}/frame/9?view=sr", proc)).shape == (120, 160, 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"at http://127.0.0.1:{port}/" in err and "espcn x2" in err and "Traceback" not in err


# -- the dashboard's endpoints --------------------------------------------------------------------

class _Handle:
    """What the dashboard reads of a run handle."""

    def __init__(self):
        self.last_input = self.last_output = None


def _out_frame(i: int) -> Frame:
    colour = ColourTags(BT601, RANGE_LIMITED)
    vf = from_rgb(_detail(i, 48, 64), "yuv420p", colour)
    vf.colorspace, vf.color_range = colour.matrix, colour.range
    return Frame(i, i, Fraction(1, 25), vf, colour, noise=3.5)


def test_snapshots_are_made_on_request_and_rate_limited():
    now = [100.0]
    snaps, handle = Snapshots(interval=1.0, clock=lambda: now[0]), _Handle()
    with pytest.raises(LookupError, match="no output picture yet"):
        snaps.jpeg(0, handle, "output")
    handle.last_output = _out_frame(0)
    first = snaps.jpeg(0, handle, "output")
    assert first[:2] == b"\xff\xd8" and Image.open(io.BytesIO(first)).size == (64, 48) and snaps.encoded == 1
    handle.last_output = _out_frame(1)
    now[0] += 0.5
    assert snaps.jpeg(0, handle, "output") == first and snaps.encoded == 1  # within the interval: the same
    now[0] += 0.6
    second = snaps.jpeg(0, handle, "output")
    assert second != first and snaps.encoded == 2
    now[0] += 5
    assert snaps.jpeg(0, handle, "output") == second and snaps.encoded == 2  # no newer frame: nothing to encode
    with pytest.raises(ConfigError, match="unknown view"):
        snaps.jpeg(0, handle, "../etc")


def test_dashboard_before_a_job_starts_and_masked_names():
    from streamsr.pipeline.job import RunHandle

    handles: list = []
    with dashboard_server(lambda: handles) as server:
        assert server.host == "127.0.0.1"  # localhost unless a host is given
        assert json.loads(_get(server.url + "api/cameras")[2]) == []
        assert _get(server.url + "snapshot/0")[0] == 404
        handles.append(RunHandle("rtsp://admin:hunter2@10.0.0.5/stream1"))
        status, _, body = _get(server.url + "api/cameras")
        (cam,) = json.loads(body)
        assert status == 200 and b"hunter2" not in body and cam["name"] == "rtsp://***@10.0.0.5/stream1"
        assert cam["state"] == "starting" and cam["frames_out"] == 0 and cam["output_size"] is None
        status, _, body = _get(server.url + "snapshot/0?view=input")
        assert status == 404 and b"no input picture yet" in body
        status, _, body = _get(server.url + "static/dashboard.js")
        assert status == 200 and b"/api/cameras" in body


@pytest.mark.slow
def test_cli_dashboard_for_a_cameras_file(tmp_path):
    """``run --config`` with two cameras (30-s files read in real time, stopped early): a tile and
    pictures each."""
    clip = make_video(tmp_path / "long.mp4", frames=750, size=(64, 48))
    cams = tmp_path / "cams.toml"
    cams.write_text(f'[defaults]\nrealtime = true\nmax_latency = 30.0\n\n'
                    f'[[camera]]\nname = "gate"\ninput = "{clip}"\noutput = "{tmp_path / "gate.mkv"}"\n\n'
                    f'[[camera]]\nname = "yard"\ninput = "{clip}"\noutput = "{tmp_path / "yard.mkv"}"\n')
    port = free_port()
    proc = subprocess.Popen([*STREAMSR, "run", "--config", str(cams), "--ui-port", str(port), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        end = time.monotonic() + 120
        cameras = []
        while time.monotonic() < end and not (len(cameras) == 2 and all(c["frames_out"] > 0 for c in cameras)):
            cameras = json.loads(_wait_for(url + "api/cameras", proc))
            time.sleep(0.2)
        assert [c["name"] for c in cameras] == ["gate", "yard"] and all(c["frames_out"] > 0 for c in cameras)
        assert {c["state"] for c in cameras} <= {"running", "done"} and cameras[0]["output_size"] == [128, 96]
        for i in (0, 1):
            status, kind, body = _get(url + f"snapshot/{i}?view=output")
            assert (status, kind) == (200, "image/jpeg") and Image.open(io.BytesIO(body)).size == (128, 96)
            assert Image.open(io.BytesIO(_get(url + f"snapshot/{i}?view=input")[2])).size == (64, 48)
        assert _get(url + "snapshot/2")[0] == 404 and _get(url + "snapshot/0?view=x")[0] == 400
        assert b"camera" in _get(url)[2]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode in (0, 130), err  # stopped early (interrupted, outputs kept), or already done


# -- in a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed here (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1000, "height": 700})
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def _shot(page, selector: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")).astype(int)


def _inner(shape) -> np.ndarray:
    """True inside an element's screenshot but its outermost pixels (where a box not on whole
    pixels is blended with what is around it)."""
    keep = np.zeros(shape[:2], bool)
    keep[1:-1, 1:-1] = True
    return keep


def _stage(page) -> dict:
    return page.eval_on_selector("#stage", "e => ({...e.dataset})")


def _expected(d: dict, img: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """What a pane shows of ``img`` at an integer zoom: (picture, mask of pixels it covers)."""
    z, tx, ty = int(float(d["z"])), int(d["tx"]), int(d["ty"])
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    iy, ix = np.floor_divide(ys - ty, z), np.floor_divide(xs - tx, z)
    inside = (iy >= 0) & (iy < img.shape[0]) & (ix >= 0) & (ix < img.shape[1])
    return img[iy.clip(0, img.shape[0] - 1), ix.clip(0, img.shape[1] - 1)].astype(int), inside


def _labels_mask(page, pane: str, shape) -> np.ndarray:
    """True away from the rendering's name tag drawn over the picture."""
    box, tag = page.locator(pane).bounding_box(), page.locator(f"{pane} .tag").bounding_box()
    keep = np.ones(shape[:2], bool)
    x0, y0 = int(tag["x"] - box["x"]) - 1, int(tag["y"] - box["y"]) - 1
    keep[max(0, y0) : y0 + int(tag["height"]) + 3, max(0, x0) : x0 + int(tag["width"]) + 3] = False
    return keep


def _check_wipe(page, left: np.ndarray, right: np.ndarray) -> int:
    """The stage pixel for pixel: ``left`` left of the wipe, ``right`` right of it. Returns the
    number of picture pixels compared."""
    d = _stage(page)
    shot = _shot(page, "#stage")
    wipe = int(d["wipe"])
    a, inside = _expected(d, left, shot.shape)
    b, _ = _expected(d, right, shot.shape)
    xs = np.arange(shot.shape[1])[None, :]
    want = np.where((xs < wipe)[..., None], a, b)
    check = inside & _inner(shot.shape) & (np.abs(xs - wipe) > 1) & _labels_mask(page, "#pane-a", shot.shape) \
        & _labels_mask(page, "#pane-b", shot.shape)
    bad = np.abs(shot - want).max(axis=2)[check]
    assert bad.max() == 0, f"{np.count_nonzero(bad)} pixels differ"
    return int(check.sum())


def _save(page, name: str) -> None:
    folder = os.environ.get("STREAMSR_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def _open_preview(page, served) -> None:
    page.goto(served.url)
    page.wait_for_selector('body[data-ready="1"]')


def _set_range(page, selector: str, value: int, event: str = "input") -> None:
    page.eval_on_selector(selector, f"(e, v) => {{ e.value = v; e.dispatchEvent(new Event('{event}')); }}", value)


@browser_test
def test_page_loads_and_the_wipe_splits_bicubic_and_the_model(page, served, session):
    _open_preview(page, served)
    assert "espcn x2" in page.inner_text("#title") and "bicubic" in page.inner_text("#tag-a")
    assert "espcn" in page.inner_text("#facts") and "160x120" in page.inner_text("#facts")
    page.keyboard.press("1")  # 1:1
    page.wait_for_selector('#stage[data-z="1"]')
    bic, sr = session.image(0, "bicubic"), session.image(0, "sr")
    d = _stage(page)
    cut = int(d["wipe"]) - int(d["tx"])
    assert 20 < cut < 140  # the wipe crosses the picture
    assert _check_wipe(page, bic, sr) > 0.9 * 160 * 120
    before = _shot(page, "#stage")
    # drag the wipe line to a quarter of the width: the columns it passed now show the model
    box = page.locator("#stage").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + int(d["wipe"]), y)
    page.mouse.down()
    page.mouse.move(box["x"] + int(d["tx"]) + 30, y, steps=5)
    page.mouse.up()
    moved = int(_stage(page)["wipe"]) - int(d["tx"])
    assert moved == 30
    _check_wipe(page, bic, sr)
    after = _shot(page, "#stage")
    ty, tx = int(d["ty"]), int(d["tx"])
    region = (slice(ty, ty + 120), slice(tx + 32, tx + cut - 2))
    assert np.array_equal(before[region], bic[:, 32 : cut - 2]) and np.array_equal(after[region], sr[:, 32 : cut - 2])
    _set_range(page, "#wipe", 1000)  # the slider: all bicubic
    assert int(_stage(page)["wipe"]) >= int(d["tx"]) + 160
    _check_wipe(page, bic, sr)
    _set_range(page, "#wipe", 500)
    page.keyboard.press("4")  # fit
    _save(page, "preview.png")


@browser_test
def test_scrubbing_to_frame_n_shows_frame_n(page, served, session):
    _open_preview(page, served)
    page.keyboard.press("1")
    _set_range(page, "#scrub", 7, "change")
    page.wait_for_selector('#stage[data-frame="7"]')
    left = _png(_get(served.url + "frame/7?view=bicubic")[2])
    right = _png(_get(served.url + "frame/7?view=sr")[2])
    assert not np.array_equal(right, session.image(6, "sr"))  # frames differ
    _check_wipe(page, left, right)
    assert "frame 8 / 10" in page.inner_text("#frame-label")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector('#stage[data-frame="8"]')
    _check_wipe(page, session.image(8, "bicubic"), session.image(8, "sr"))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector('#stage[data-frame="6"]')
    page.keyboard.press(" ")  # play to the end of the clip
    page.wait_for_selector('#stage[data-frame="9"]')
    page.wait_for_function("() => document.getElementById('play').textContent === '▶'")
    _check_wipe(page, session.image(9, "bicubic"), session.image(9, "sr"))


@browser_test
def test_zoom_gives_whole_pixels_in_step_and_pans(page, served, session):
    _open_preview(page, served)
    bic, sr = session.image(0, "bicubic"), session.image(0, "sr")
    for key, z in (("1", 1), ("2", 2), ("3", 4)):
        page.keyboard.press(key)
        page.wait_for_selector(f'#stage[data-z="{z}"]')
        _check_wipe(page, bic, sr)  # z×z screen pixels per picture pixel, exactly
    d = _stage(page)  # 4:1 is taller than the stage: drag to pan
    assert 4 * 120 > page.locator("#stage").bounding_box()["height"]
    box = page.locator("#stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 140, steps=4)
    page.mouse.up()
    assert int(_stage(page)["ty"]) > int(d["ty"])
    _check_wipe(page, bic, sr)
    page.keyboard.press("s")  # side by side: both panes, the same region
    page.wait_for_selector('#stage[data-mode="side"]')
    d = _stage(page)
    for pane, img in (("#pane-a", bic), ("#pane-b", sr)):
        shot = _shot(page, pane)
        want, inside = _expected(d, img, shot.shape)
        check = inside & _inner(shot.shape) & _labels_mask(page, pane, shot.shape)
        assert check.sum() > 1000 and np.abs(shot - want).max(axis=2)[check].max() == 0, pane


def _until(page, condition: str, port: int) -> None:
    """Wait for a JavaScript condition; on timeout say what the page and the run showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition)
    except PlaywrightTimeout:
        cameras = _get(f"http://127.0.0.1:{port}/api/cameras")[2].decode()
        raise AssertionError(f"never true: {condition}\npage: {page.inner_text('#wall')!r}\nrun: {cameras}") from None


@browser_test
@pytest.mark.rtsp
@pytest.mark.slow
def test_dashboard_on_a_live_camera(page, rtsp_server, tmp_path):
    server = rtsp_server(user="viewer", password="s3cret")
    port = free_port()
    proc = subprocess.Popen([*STREAMSR, "run", server.url(user="viewer", password="s3cret"), "-o",
                             str(tmp_path / "cam.mkv"), "--ui-port", f"127.0.0.1:{port}", "--read-timeout", "2",
                             "--reconnect-max-wait", "0", "--max-latency", "30", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/cameras", proc)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('.tile[data-state="running"][data-snapshots]')
        tile = page.locator('.tile[data-index="0"]')
        assert "rtsp://***@127.0.0.1" in tile.locator(".name").inner_text()
        counted = int(tile.locator(".frames-out").inner_text())
        _until(page, f"() => Number(document.querySelector('.tile .frames-out').textContent) > {counted}", port)
        _until(page, "() => Number(document.querySelector('.tile .frames-in').textContent) > 0", port)
        seen = int(tile.get_attribute("data-snapshots"))
        first = _shot(page, ".tile img.output")
        _until(page, f"() => Number(document.querySelector('.tile').dataset.snapshots) >= {seen + 2}", port)
        assert not np.array_equal(_shot(page, ".tile img.output"), first)  # the ball moved
        assert page.eval_on_selector(".tile img.output", "e => e.naturalWidth") == 640
        tile.click()  # the input beside the output
        _until(page, "() => document.querySelector('.tile img.input').naturalWidth === 320", port)
        assert tile.locator(".state").inner_text() == "connected"
        _save(page, "dashboard.png")
        body = page.content() + _get(f"http://127.0.0.1:{port}/api/cameras")[2].decode()
        assert "s3cret" not in body
        server.stop()  # the camera goes away
        _until(page, "() => document.querySelector('.tile').dataset.state === 'reconnecting'", port)
        assert tile.locator(".state").inner_text() == "reconnecting"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
