"""``fastmmd serve``: the local web page (:mod:`fastmmd.apps.serve`); FastAPI and uvicorn are imported only when it starts."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastmmd.apps.serve import DEFAULT_HOST, DEFAULT_PORT, bind, is_loopback, port_of, url_of
from fastmmd.base.errors import UserError


def build_parser() -> Any:
    """``fastmmd serve [--host 127.0.0.1] [--port 7860] [--models DIR]``."""
    from fastmmd.base.settings import RuntimeSettings
    from fastmmd.commands.parsing import CommandParser, add_dataclass_flags

    parser = CommandParser("fastmmd serve", "A local web page: drop a photo, see it in every style, pick one, move the "
                           "strength slider or blend two styles, download the full-size PNG. Needs the serve extra "
                           "(pip install 'fastmmd[serve]').")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 lets anyone on your network use the page)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port)")
    parser.add_argument("--models", default=None, help="a folder of your own networks (.pt, .pt2 from fastmmd export, "
                        "training .ckpt), offered beside the shipped styles")
    add_dataclass_flags(parser, RuntimeSettings, exclude=("no_progress",), defaults={"device": "cpu"})
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest photo file accepted (MB)")
    parser.add_argument("--max-megapixels", type=float, default=50.0, help="largest photo (or video frame) accepted "
                        "(million pixels)")
    parser.add_argument("--max-video-mb", type=float, default=500.0, help="largest video clip accepted (MB)")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
        from fastmmd.base.precision import resolve_precision

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
