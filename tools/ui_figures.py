"""Screenshots of both pages for the README (docs/figures/preview.png, dashboard.png).

Needs Debian's chromium and the test extra (playwright); starts the test RTSP server of tests/.

    .venv/bin/python tools/ui_figures.py
"""

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import av
from conftest import RtspServer, free_port
from playwright.sync_api import sync_playwright

from streamsr.config import SAMPLE_CLIP
from streamsr.metrics import imresize

OUT = ROOT / "docs" / "figures"
OUT.mkdir(parents=True, exist_ok=True)
TMP = Path(tempfile.mkdtemp())
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--force-color-profile=srgb"]
PY = [sys.executable, "-m", "streamsr.cli"]

# LR of the bundled clip (MATLAB bicubic /2), HR = the clip
lr = TMP / "sample_lr_x2.mp4"
with av.open(str(SAMPLE_CLIP)) as src, av.open(str(lr), "w") as out:
    s = out.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 192, 144, "yuv420p"
    s.codec_context.options = {"crf": "12"}
    for i, f in enumerate(src.decode(video=0)):
        img = imresize(f.to_ndarray(format="rgb24"), 0.5)
        vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        for p in s.encode(vf):
            out.mux(p)
    for p in s.encode(None):
        out.mux(p)

def wait(url, proc, t=300):
    end = time.time() + t
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            return urllib.request.urlopen(url, timeout=60).read()
        except OSError:
            time.sleep(0.3)
    raise SystemExit("no answer " + url)

with sync_playwright() as p:
    ctx = p.chromium.launch_persistent_context(str(TMP / "profile"), executable_path="/usr/bin/chromium", headless=True, args=FLAGS, viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(600_000)
    page = ctx.new_page()
    # preview
    port = free_port()
    proc = subprocess.Popen(PY + ["preview", str(lr), "--model", "srresnet", "--scale", "2", "--reference", str(SAMPLE_CLIP), "--port", str(port), "-q"])
    try:
        wait(f"http://127.0.0.1:{port}/api/info", proc)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('body[data-ready="1"]')
        # wait for the whole clip's metrics
        page.wait_for_function("() => document.querySelector('#plot-box') && !document.querySelector('#plot-box').hidden")
        n = json.loads(wait(f"http://127.0.0.1:{port}/api/info", proc))["input"]["frames"]
        for k in range(n):
            wait(f"http://127.0.0.1:{port}/api/metrics/{k}", proc)
        time.sleep(3)
        page.eval_on_selector("#scrub", "(e) => { e.value = 30; e.dispatchEvent(new Event('change')); }")
        page.wait_for_selector('#stage[data-frame="30"]')
        page.keyboard.press("2")
        page.eval_on_selector("#wipe", "(e) => { e.value = 480; e.dispatchEvent(new Event('input')); }")
        time.sleep(4)
        page.screenshot(path=str(OUT / "preview.png"), full_page=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # dashboard: a live camera, the bundled clip read in real time, a camera that is not there
    server = RtspServer(size="192x144").start()
    cams = TMP / "cams.toml"
    cams.write_text(f'[defaults]\nmodel = "espcn"\nscale = 2\nreconnect_max_wait = 4\nread_timeout = 2\n\n'
                    f'[[camera]]\nname = "gate"\ninput = "{server.url()}"\noutput = "{TMP}/gate.mkv"\n\n'
                    f'[[camera]]\nname = "lobby"\ninput = "{server.url()}"\noutput = "{TMP}/lobby.mkv"\n\n'
                    f'[[camera]]\nname = "yard"\ninput = "rtsp://admin:secret@127.0.0.1:{free_port()}/cam"\noutput = "{TMP}/yard.mkv"\n')
    port = free_port()
    proc = subprocess.Popen(PY + ["run", "--config", str(cams), "--ui-port", str(port), "-q"], stderr=subprocess.DEVNULL)
    try:
        wait(f"http://127.0.0.1:{port}/api/cameras", proc)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('.tile[data-index="1"][data-snapshots]')
        page.locator('.tile[data-index="1"]').click()
        time.sleep(25)
        page.screenshot(path=str(OUT / "dashboard.png"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        server.stop()
    ctx.close()
print("ok")
