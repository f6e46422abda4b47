"""``fastmmd serve``: a local web page to stylize photos with the shipped styles and your own networks.

The page (one static HTML/CSS/JS page in ``fastmmd/apps/serve/static``, every asset served by this
server; no CDN, web font, analytics or update check) takes photos by drag-and-drop, file picker,
paste or the camera (also stylized live), shows every style as a thumbnail of the photo (a contact
sheet computed server-side at preview size), previews a choice at <= 384 px, and computes, shows
and downloads the full-size result as a PNG with the settings in its text metadata (several
photos: a ZIP; a video clip: an MP4). Networks trained with a strength input or on several
styles (:mod:`fastmmd.model.conditioning`) get a strength slider and a two-style blend.

This module is the command line (kept light: FastAPI and uvicorn are imported only when the
server starts); the server itself is :mod:`fastmmd.apps.serve.app`. Install with
``pip install fastmmd[serve]``.
"""

from __future__ import annotations

import ipaddress
import socket

from fastmmd.base.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860




def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a one-line :class:`UserError`."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must lie in 0..65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UserError(f"--host {host!r} is not an address of this machine ({err})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UserError(f"port {port} on {host} is in use; pick another with --port (0: any free port)") from None
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT/`` for a bound socket (IPv6 hosts in brackets; this machine's loopback
    address for a socket on all addresses, 0.0.0.0 or ::)."""
    host, port = sock.getsockname()[:2]
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if ":" not in host else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"




def port_of(sock: socket.socket) -> int:
    """The port a bound socket listens on."""
    return int(sock.getsockname()[1])


