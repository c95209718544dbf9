"""Make the bundled demo clip streamsr/data/sample.mp4 from opencv-doc's vtest.avi.

vtest.avi is a real surveillance clip (768x576, 10 fps). The sample keeps its first 5 seconds,
shrinks it to 384x288 (area filter) so the demo upscales a genuinely small stream, and adds a
quiet 440 Hz AAC track so the demo shows audio being copied untouched.

    sudo apt-get install opencv-doc && python tools/make_sample.py
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from streamsr.synth import encode_tone

SRC = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DST = Path(__file__).resolve().parents[1] / "streamsr" / "data" / "sample.mp4"


def main(seconds: int = 5) -> None:
    with av.open(str(SRC)) as src, av.open(str(DST), "w") as out:
        ins = src.streams.video[0]
        fps = int(ins.average_rate)
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = ins.width // 2, ins.height // 2, "yuv420p"
        vs.codec_context.colorspace = 5  # BT.601, what the source is
        vs.codec_context.color_range = 1
        vs.codec_context.options = {"crf": "20", "preset": "slow"}
        vs.time_base = vs.codec_context.time_base = Fraction(1, fps)
        aus = out.add_stream("aac", rate=48000)  # every stream before the first packet
        aus.codec_context.layout = "mono"
        for i, frame in enumerate(src.decode(ins)):
            if i >= seconds * fps:
                break
            small = frame.reformat(vs.width, vs.height, "yuv420p", interpolation="AREA")
            small.pts, small.time_base = i, Fraction(1, fps)
            for p in vs.encode(small):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        encode_tone(out, aus, seconds, amplitude=0.1, layout="mono")
    print(f"wrote {DST} ({DST.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
