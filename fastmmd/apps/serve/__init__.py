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
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def build_parser() -> Any:
    """``fastmmd serve [--host 127.0.0.1] [--port 7860] [--models DIR]``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser("fastmmd serve", "A local web page: drop a photo, see it in every style, pick one, move the "
                           "strength slider or blend two styles, download the full-size PNG. Needs the serve extra "
                           "(pip install 'fastmmd[serve]').")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 lets anyone on your network use the page)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port)")
    parser.add_argument("--models", default=None, help="a folder of your own networks (.pt, .pt2 from fastmmd export, "
                        "training .ckpt), offered beside the shipped styles")
    parser.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N")
    parser.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto", help="auto (default): bfloat16 "
                        "where it is fast (a CPU with AVX512-BF16 or AMX, a bf16 GPU; 2-3x faster on the dev CPU, pixels "
                        "within ~1 level of fp32), else float32")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest photo file accepted (MB)")
    parser.add_argument("--max-megapixels", type=float, default=50.0, help="largest photo (or video frame) accepted "
                        "(million pixels)")
    parser.add_argument("--max-video-mb", type=float, default=500.0, help="largest video clip accepted (MB)")
    return parser


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def port_of(sock: socket.socket) -> int:
    """The port a bound socket listens on."""
    return int(sock.getsockname()[1])


def run(args: Any) -> int:
    """Runs ``fastmmd serve`` until Ctrl+C; the temporary upload folder is removed on exit."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise UserError(f"fastmmd serve needs the serve extra ({err.name} is missing): "
                        "pip install 'fastmmd[serve]'") from None
    from fastmmd.apps.serve.app import Catalog, Limits, create_app, serve_forever

    if min(args.max_upload_mb, args.max_megapixels, args.max_video_mb) <= 0:
        raise UserError("--max-upload-mb, --max-megapixels and --max-video-mb must be positive")
    models = None
    if args.models is not None:
        models = Path(args.models)
        if not models.is_dir():
            raise UserError(f"--models {args.models!r} is not a folder; give a folder of .pt/.pt2/.ckpt files")
    sock = bind(args.host, args.port)
    try:
        from fastmmd.base.devices import resolve_device
        from fastmmd.commands.parsing import resolve_precision

        bf16 = resolve_precision(args.precision, resolve_device(args.device)) == "bf16"
        catalog = Catalog.load(models, device=args.device, bf16=bf16,
                               warn=lambda line: print(f"fastmmd serve: {line}", file=sys.stderr))
        limits = Limits(upload_bytes=int(args.max_upload_mb * 1e6), pixels=int(args.max_megapixels * 1e6),
                        video_bytes=int(args.max_video_mb * 1e6))
        if not is_loopback(args.host):
            print(f"fastmmd serve: warning: listening on {args.host}: anyone who can reach this machine can use the "
                  "page, upload photos and use its CPU; use --host 127.0.0.1 to keep it to this machine",
                  file=sys.stderr)
        names = ", ".join(m.name for m in catalog.models)
        print(f"fastmmd serve: {len(catalog.models)} model(s) in {'bfloat16' if bf16 else 'float32'}: {names}",
              file=sys.stderr)
        elsewhere = "" if is_loopback(args.host) else f" (from other machines: this machine's address, port {port_of(sock)})"
        print(f"fastmmd serve: open {url_of(sock)} in a browser{elsewhere}; Ctrl+C stops", flush=True)
        # uvicorn stops on SIGTERM and then re-raises it; as KeyboardInterrupt it unwinds like Ctrl+C,
        # so the temporary folder is removed (the default action would end the process first).
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with tempfile.TemporaryDirectory(prefix="fastmmd-serve-") as workdir:
                hosts = ["127.0.0.1", "localhost", "::1", args.host] if is_loopback(args.host) else None
                app = create_app(catalog, Path(workdir), limits, allowed_hosts=hosts)
                try:
                    serve_forever(app, sock)
                except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down: a normal stop
                    pass
                finally:
                    app.state.serve.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
        print("fastmmd serve: stopped; the uploads and results are deleted", file=sys.stderr)
    finally:
        sock.close()
    return 0
