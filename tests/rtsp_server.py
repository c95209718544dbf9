"""A real RTSP server for the tests: GStreamer's gst-rtsp-server, run with Debian's /usr/bin/python3.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--user U --password P] [--record-dir DIR] [--audio]

Serves a live synthetic H.264 stream (videotestsrc → x264enc) at rtsp://127.0.0.1:PORT/cam; with
--audio also a 440 Hz tone as G.711 A-law at 8 kHz, as IP cameras send their microphone.
With --record-dir it also accepts clients that push (RTSP RECORD) to /push and writes what they
send, as MPEG-TS, to DIR/push.ts. Prints READY once listening; runs until killed.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--record-dir")
    ap.add_argument("--audio", action="store_true")
    args = ap.parse_args()
    Gst.init(None)
    w, h = args.size.split("x")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    cam = GstRtspServer.RTSPMediaFactory()
    audio = (" audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=8000,channels=1 "
             "! alawenc ! rtppcmapay name=pay1 pt=8" if args.audio else "")
    cam.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1{audio} )"
    )
    # not shared: gst-rtsp-server 1.22 aborts (rtsp-media.c gst_rtsp_media_get_rates assertion)
    # when two clients set up one shared media at the same moment; a pipeline per client avoids it
    cam.set_shared(False)
    mounts.add_factory("/cam", cam)

    if args.record_dir:
        push = GstRtspServer.RTSPMediaFactory()
        push.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        push.set_launch(
            f"( rtph264depay name=depay0 ! h264parse ! mpegtsmux ! filesink location={args.record_dir}/push.ts )"
        )
        mounts.add_factory("/push", push)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        for factory in [cam] + ([push] if args.record_dir else []):
            perms = GstRtspServer.RTSPPermissions()
            perms.add_permission_for_role(args.user, "media.factory.access", True)
            perms.add_permission_for_role(args.user, "media.factory.construct", True)
            factory.set_permissions(perms)

    if server.attach(None) == 0:
        print("FAILED to attach", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
