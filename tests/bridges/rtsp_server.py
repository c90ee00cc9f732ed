"""A real RTSP server for the tests: GStreamer's (gst-rtsp-server), serving a live test pattern as
JPEG over RTP at rtsp://127.0.0.1:PORT/cam, with Basic or Digest authentication.

Run with the system Python, which has the GObject bindings (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good):
    /usr/bin/python3 rtsp_server.py PORT USER PASSWORD basic|digest
It prints "ready" once it listens, and serves until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

port, user, password, method = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=5/1 "
                   "! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)
permissions = GstRtspServer.RTSPPermissions()
permissions.add_role_from_structure(Gst.Structure.from_string(
    "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
factory.set_permissions(permissions)
auth = GstRtspServer.RTSPAuth()
token = GstRtspServer.RTSPToken()
token.set_string("media.factory.role", "user")
if method == "digest":
    auth.add_digest(user, password, token)
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
else:
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
server.set_auth(auth)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + port)
print("ready", flush=True)
GLib.MainLoop().run()
