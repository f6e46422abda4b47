"""Security checks that need a process of their own (issue 8 and 26; the rest, in process:
tests/integration/test_security.py): the real console prints exactly one line for a crafted file;
resource payloads (crafted archives, pickles, old-format files, VGG files, video rates, ONNX graphs)
are refused under a hard address-space limit (RLIMIT_AS); SIGTERM mid-encode leaves no part file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clips import write_clip
from conftest import require_onnx
from payloads import PICKLE_PAYLOADS, RESOURCE_PAYLOADS

import fastmmd

SOURCE = str(Path(fastmmd.__file__).parent.parent)
TINY_OPTIMIZE = ["--vgg-width-divisor", "8", "--size", "16", "--iterations", "1", "--no-progress", "--device", "cpu"]


def test_console_shows_exactly_one_line(tiny_exports, make_image, tmp_path):
    """The real console script: no warning, log record or traceback besides the one error line."""
    marker = tmp_path / "MARKER"
    crafted = PICKLE_PAYLOADS["pt2-sample-inputs"](tiny_exports, marker, tmp_path)
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(tiny_exports["pt2"].read_bytes()[:5000])
    img = make_image("photo.png", 20, 20)
    script = ("import sys\nfrom fastmmd.__main__ import main\n"
              "for argv in sys.argv[1:]:\n"
              "    try:\n        main(argv.split('|'))\n    except SystemExit as e:\n        print('exit', e.code)\n")
    runs = [f"stylize|{crafted}|{img}|-o|{tmp_path / 'o'}|-q", f"export|--info|{crafted}", f"stylize|{broken}|{img}|-o|{tmp_path / 'o'}"]
    res = subprocess.run([sys.executable, "-c", script, *runs], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": SOURCE})
    assert res.stdout.split() == ["exit", "2"] * 3, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("fastmmd: error:") for line in lines), res.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------------- issue 26
#: Address space a payload may take beyond what reading and running a genuine model took.
HEADROOM = 1536 << 20
#: Runs argv lists through the entry point in one process: first genuine models (their peak
#: address space is the baseline), then RLIMIT_AS = baseline + HEADROOM, then every payload.
#: Prints one JSON line per run: exit code and the stderr lines it wrote.
_LIMITED_RUNS = """
import contextlib, io, json, resource, sys
import torch
from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.infer.stylize import load_stylizer

def run(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            if argv[0] == "load_stylizer":  # the Python API: load, then run on a small batch
                code = load_stylizer(argv[1], device="cpu").stylize_tensor(torch.rand(1, 3, 20, 20)) is None
            else:
                code = main(argv)
        except SystemExit as e:
            code = e.code
        except UserError as e:
            print(f"fastmmd: error: {e}", file=sys.stderr)
            code = 2
        except BaseException as e:
            print(f"Traceback: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
    return code, err.getvalue().strip().splitlines()

genuine, payloads = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for argv in genuine:
    assert run(argv)[0] == 0, argv
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmPeak")).split()[1]) * 1024
limit = peak + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
print(json.dumps({"baseline": peak, "limit": limit}), flush=True)
for argv in payloads:
    code, lines = run(argv)
    print(json.dumps({"argv": argv, "code": code, "err": lines}), flush=True)
"""


def _limited(genuine: list[list[str]], payloads: list[list[str]], cwd: Path) -> list[dict]:
    res = subprocess.run([sys.executable, "-c", _LIMITED_RUNS, json.dumps(genuine), json.dumps(payloads), str(HEADROOM)],
                         capture_output=True, text=True, timeout=300, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": SOURCE, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert not res.stderr.strip(), res.stderr  # nothing reached the real stderr: no log line, no warning
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["limit"] > rows[0]["baseline"]
    return rows[1:]


@pytest.mark.heavy(4)
def test_resource_payloads_are_refused_in_one_line_under_a_hard_memory_limit(tiny_exports, make_image, tmp_path):
    """Every resource payload x every loader: exit 2, one line, nothing written, within the baseline
    + 1.5 GB of address space (the payloads declare 1-50 GB or loop forever), and no file read
    besides the one given (the If-branch payload points at ``.env`` in the working folder). In the
    same limited process: an 89-byte GIF declaring a 16000 x 16000 screen (it decoded 3 GB frames)
    obeys the image pixel limit before decoding."""
    from payloads import gif_huge_screen

    require_onnx()
    (tmp_path / ".env").write_text("SECRET=do-not-read\n")
    img = make_image("photo.png", 20, 20)
    out = tmp_path / "out"
    genuine = [["stylize", str(tiny_exports[k]), str(img), "-o", str(tmp_path / "genuine"), "-q"]
               for k in ("ckpt", "torchscript", "pt2", "onnx")]
    payloads = []
    for name, (build, scale, _full) in RESOURCE_PAYLOADS.items():
        crafted = build(tiny_exports, tmp_path, scale)
        payloads.append(["stylize", str(crafted), str(img), "-o", str(out), "-q"])
        payloads.append(["load_stylizer", str(crafted)])
        payloads.append(["export", str(crafted), "-o", str(out / "x.pt")] if crafted.suffix == ".ckpt"
                        else ["export", "--info", str(crafted)])
    gif = ["stylize", str(tiny_exports["ckpt"]), str(gif_huge_screen(tmp_path)), "-o", str(tmp_path / "gif_out"), "-q"]
    rows = _limited(genuine, [*payloads, gif], tmp_path)
    assert len(rows) == len(payloads) + 1
    gif_row = rows.pop()
    for row in rows:
        assert row["code"] == 2 and len(row["err"]) == 1, row
        assert row["err"][0].startswith("fastmmd: error:") and "Traceback" not in row["err"][0], row
        assert "do-not-read" not in row["err"][0]
    assert not out.exists()
    assert len(list((tmp_path / "genuine").iterdir())) == 1  # the genuine runs wrote photo_stylized.png
    assert gif_row["code"] == 2 and len(gif_row["err"]) == 1 and "Mpx limit" in gif_row["err"][0], gif_row
    assert not (tmp_path / "gif_out").exists()


def test_sigterm_mid_encode_removes_the_part_file(tiny_exports, tmp_path):
    import signal
    import time


    # long enough that the signal lands mid-encode even on a loaded box (300 frames once finished first)
    clip = write_clip(tmp_path / "long.mp4", frames=1200, width=64, height=48, audio=None)
    out = tmp_path / "o"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from fastmmd.__main__ import main; sys.exit(main(sys.argv[1:]))",
                             "stylize", str(tiny_exports["ckpt"]), str(clip), "-o", str(out / "x.mp4"), "-q"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SOURCE, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not list(out.glob(".*.part")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the clip was done before SIGTERM arrived")
    assert proc.returncode == 143 and err.strip().splitlines() == ["fastmmd: terminated; files already written are complete"]
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------- issue 26, round three
_PROBE_PICKLES = """
import io, json, pickle, resource, sys
from fastmmd.base.safe_load import PlainUnpickler
bombs = {name: bytes.fromhex(h) for name, h in json.loads(sys.argv[1]).items()}
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmPeak")).split()[1]) * 1024
limit = peak + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for name, data in bombs.items():
    row = {"name": name}
    for reader, load in (("c", lambda d: pickle.loads(d)), ("plain", lambda d: PlainUnpickler(io.BytesIO(d)).load())):
        try:
            row[reader] = repr(load(data))
        except BaseException as e:
            row[reader] = type(e).__name__
    print(json.dumps(row), flush=True)
"""


def test_pickle_memo_and_bytearray_sizes_allocate_nothing():
    """Eight bytes of pickle made CPython's C unpickler zero a 16 GB memo table (fastmmd's TorchScript
    reader used it); a 13-byte BYTEARRAY8 makes the stock pure-Python one zero-fill the declared length.
    Under a hard limit of 1 GiB more than the interpreter took, the C unpickler fails for want of
    memory on the first, and :class:`PlainUnpickler` reads both without allocating."""
    import struct

    from payloads import pickle_memo_bomb

    bombs = {"memo": pickle_memo_bomb(1 << 30).hex(),
             "bytearray8": (b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"x.").hex()}
    res = subprocess.run([sys.executable, "-c", _PROBE_PICKLES, json.dumps(bombs)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": SOURCE})
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert rows["memo"]["c"] == "MemoryError" and rows["memo"]["plain"] == "None", rows  # the limit bites; the fix holds
    assert rows["bytearray8"]["plain"] == "UnpicklingError", rows


def _old_format_and_vgg_cases(tiny_exports, folder: Path) -> list[tuple[list[str], str]]:
    """Old-format checkpoints and VGG files that declare gigabytes: (argv, the reason the refusal names)."""
    from conftest import synthetic_image
    from payloads import ckpt_legacy_declared, ckpt_legacy_resized, pt_memo, vgg_legacy_declared, vgg_stride0

    img, out = folder / "photo.png", folder / "out"
    synthetic_image(20, 20).save(img)
    cases = []
    for crafted, needle in ((ckpt_legacy_declared(tiny_exports, folder), "storages nowhere"),
                            (ckpt_legacy_resized(tiny_exports, folder, 1 << 30), "reaches past its storage"),
                            (pt_memo(tiny_exports, folder, 1 << 30), "do not match its network description")):
        cases += [(["stylize", str(crafted), str(img), "-o", str(out), "-q"], needle), (["load_stylizer", str(crafted)], needle)]
    for crafted, needle in ((vgg_legacy_declared(folder, 1 << 31), "storages nowhere"),
                            (vgg_stride0(folder, 1 << 31), "overlapping or repeated views")):
        cases.append((["optimize", *TINY_OPTIMIZE[2:], "--content", str(img), "--style", str(img),
                       "--vgg-weights", str(crafted), "--output", str(out / "o.png")], needle))
    return cases


def _video_cases(tiny_exports, folder: Path) -> list[tuple[list[str], str]]:
    """Clips that declare or carry more frames or pixels per second than any real clip."""
    from payloads import clip_microsecond_frames, clip_one_instant, gif_fast_screen

    from fastmmd.infer.video import MAX_FRAME_RATE

    model = str(tiny_exports["ckpt"])
    clips = [(gif_fast_screen(folder), "Gpx per second"), (clip_microsecond_frames(folder), "frames per second"),
             (clip_one_instant(folder), f"holds {MAX_FRAME_RATE + 1} frames in 0.000 s")]
    cases = [(["stylize", model, str(clip), "-o", str(folder / f"out{i}.mp4"), "-q"], needle)
             for i, (clip, needle) in enumerate(clips)]
    return [*cases, (["stylize", model, str(clips[2][0]), "-o", str(folder / "frames"), "-q"], clips[2][1])]  # frames out


def _onnx_cases(folder: Path) -> list[tuple[list[str], str | None]]:
    """ONNX graphs whose memory grows with a constant, with the image's pixels or with its values; the
    last case (needle None) is a small batch of the quadratic graph, which runs."""
    from conftest import synthetic_image
    from payloads import onnx_constant_expand, onnx_outer_product, onnx_shape_from_data

    from fastmmd.model.files import ONNX_PROBE

    small, big, out = folder / "small.png", folder / "big.png", folder / "out"
    synthetic_image(ONNX_PROBE[3], ONNX_PROBE[2]).save(small)
    synthetic_image(100, 100).save(big)
    outer = onnx_outer_product({}, folder)
    return [(["stylize", str(onnx_constant_expand({}, folder)), str(small), "-o", str(out), "-q"], "4.29 GB for a 1x3x16x16"),
            (["stylize", str(onnx_shape_from_data({}, folder)), str(small), "-o", str(out), "-q"], "cannot bound"),
            (["stylize", str(outer), str(big), "-o", str(out), "-q"], "3.60 GB for a 1x3x100x100 batch"),
            (["export", "--info", str(onnx_constant_expand({}, folder))], "in proportion to its input"),
            (["stylize", str(outer), str(small), "-o", str(folder / "ok"), "-q"], None)]


@pytest.fixture(scope="session")
def limited_payloads(tiny_exports, tmp_path_factory) -> dict[str, tuple[Path, list[tuple[list[str], str | None, dict]]]]:
    """The payloads of the three tests below run in one process under one hard limit (:func:`_limited`,
    no genuine run first: the interpreter's own peak + :data:`HEADROOM`), once for all pytest-xdist
    workers (conftest.built_once), each group in a folder of its own: group name -> (its folder,
    [(argv, needle, what the run gave)]). A group whose extra is not installed is left out (its test skips)."""
    from conftest import built_once

    groups = {"old_format": lambda f: _old_format_and_vgg_cases(tiny_exports, f)}
    try:
        import av  # noqa: F401

        groups["video"] = lambda f: _video_cases(tiny_exports, f)
    except ImportError:
        pass
    try:
        import onnx  # noqa: F401

        groups["onnx"] = _onnx_cases
    except ImportError:
        pass

    def run(root: Path) -> None:
        cases = {}
        for name, make in groups.items():
            (root / name).mkdir()
            cases[name] = make(root / name)
        rows = iter(_limited([], [argv for group in cases.values() for argv, _ in group], root))
        runs = {name: [(argv, needle, next(rows)) for argv, needle in group] for name, group in cases.items()}
        (root / "runs.json").write_text(json.dumps(runs))

    root = built_once(tmp_path_factory, "limited_payloads", run)
    return {name: (root / name, [tuple(r) for r in runs]) for name, runs in json.loads((root / "runs.json").read_text()).items()}


@pytest.mark.heavy(6)  # the three tests' payloads (limited_payloads)
def test_old_format_and_vgg_payloads_are_refused_for_what_they_are(limited_payloads):
    """Old-format (non-zip) files whose storages declare gigabytes they do not store, or views that
    grow a storage, and VGG files whose weights would be expanded by ``.float()``: refused with their
    reason, under a hard memory limit (before, each failed on the limit as 'truncated or corrupt', or
    with a traceback, or - within memory - wrote the gigabytes)."""
    folder, runs = limited_payloads["old_format"]
    assert len(runs) == 8
    for _, needle, row in runs:
        assert row["code"] == 2 and len(row["err"]) == 1 and needle in row["err"][0], row
    assert not (folder / "out").exists()


def test_video_frame_and_pixel_rates_are_bounded(limited_payloads):
    """Tiny clips that declare (a GIF repainting a 4600 x 4600 screen 50 times a second; an MP4 of
    frames a microsecond apart) or carry (1,100 frames at one timestamp under a 25 fps header) more
    frames or pixels per second than any real clip: one line, exit 2, nothing written, under a hard
    memory limit; the decoded frames are counted by the message (at most one second's worth)."""
    if "video" not in limited_payloads:
        pytest.skip("video needs PyAV: pip install -e '.[test]'")
    folder, runs = limited_payloads["video"]
    assert len(runs) == 4
    for _, needle, row in runs:
        assert row["code"] == 2 and len(row["err"]) == 1 and needle in row["err"][0], row
    assert not [p for p in folder.iterdir() if p.name.startswith(("out", ".out", "frames"))]


def test_onnx_memory_is_bounded_per_run_in_proportion_to_its_input(limited_payloads):
    """Allowed operators only, under a hard memory limit: a constant Expand that onnxruntime folds
    while opening the session (4 GiB), an outer product of the image with itself (quadratic in its
    pixels) and an Expand sized from the image's values: refused, the first and last when the file
    opens, the outer product for the batch that would take 3.6 GB (a 100 x 100 photo) while a
    16 x 16 one runs. Before, each ran (exit 0, up to 4.9 GB) unless over onnxruntime's process cap."""
    if "onnx" not in limited_payloads:
        pytest.skip("needs the onnx extra: pip install -e '.[onnx]'")
    folder, runs = limited_payloads["onnx"]
    *refused, (_, _, small) = runs
    assert len(refused) == 4
    for _, needle, row in refused:
        assert row["code"] == 2 and len(row["err"]) == 1 and needle in row["err"][0], row
    assert small["code"] == 0, small  # a small batch of the same graph is within its share
    assert not (folder / "out").exists()
