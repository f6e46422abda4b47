"""Runs the ``fastmmd`` commands of a shell script in the test's own process.

A script whose fastmmd command is ``python tests/relay.py SOCKET`` (scripts/quickstart.sh's
``QUICKSTART_FASTMMD``) sends each command's words and current folder over a Unix socket to
:func:`serve`, which runs them in the test's process and sends back the exit code and what the command
printed; the client prints that and exits with the code. The script itself runs as bash runs it; only
its commands skip starting a Python that imports torch (and Lightning) again, about 2 s of CPU each.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: run(argv, cwd) -> (exit code, stdout, stderr)
Runner = Callable[[list[str], Path], tuple[int, str, str]]


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def serve(process: subprocess.Popen, path: Path, run: Runner) -> int:
    """Answers the clients of ``path`` with ``run`` until ``process`` ends; returns its exit code."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(0.05)
        while process.poll() is None:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                request = json.loads(_read_all(conn))
                code, out, err = run(request["argv"], Path(request["cwd"]))
                conn.sendall(json.dumps({"code": code, "out": out, "err": err}).encode())
    return process.returncode


def main() -> int:
    path, argv = sys.argv[1], sys.argv[2:]
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(path)
        conn.sendall(json.dumps({"argv": argv, "cwd": os.getcwd()}).encode())
        conn.shutdown(socket.SHUT_WR)
        reply = json.loads(_read_all(conn))
    sys.stdout.write(reply["out"])
    sys.stderr.write(reply["err"])
    return int(reply["code"])


if __name__ == "__main__":
    raise SystemExit(main())
