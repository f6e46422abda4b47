"""Every ``fastmmd`` command README.md and docs/*.md show runs to completion (issue 24), and so does the
quickstart, so that none of them can rot unseen.

The commands (:mod:`documented`: the ones tests/integration/test_docs_commands.py parses) run once per
session, in this process (``fastmmd.__main__.main``), in a folder laid out like a checkout: the
repository's ``configs/``, the shipped networks the recipes warm-start from, and tiny generated
stand-ins for every other file they name (:func:`lay_out`). They run as shown, globs expanded as
bash expands them, with flags appended to shrink them (:data:`SHRINK`, and the tests' network for a
fit from scratch, :data:`TINY_NETWORK`: the only change made; a flag given later wins). The pages run
in three independent groups (:data:`GROUPS`: each its own folder, built by whichever pytest-xdist
worker asks first), each line once (:func:`runnable`), each group in this order: ``data`` (from a local
stand-in for the Hub), every ``fit``, ``distill`` and ``export`` (they make the files the other
commands read), the files no page shows how to make (:data:`MADE_BY`), then the rest in page order.
Each command must exit 0 and write what it names (:func:`check_outputs`); ``serve`` runs on a free
port until it has answered one request. Commands that cannot run here are in :data:`NOT_RUN`, with
the reason; they are still parsed.

The quickstart (:func:`test_the_quickstart_runs_every_step`) runs under bash from a copy of the
repository's layout, with the knobs its header documents: this interpreter instead of a new venv,
tiny sample data and fit, and its ``fastmmd`` commands run in this process (:mod:`relay`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TESTS, built_once, onnx_available, require_onnx, synthetic_image, write_tiny_checkpoint
from documented import Shown, documented_commands

#: Flags appended to each command, per subcommand (a flag given later wins). ``fit``: one step (two
#: when it resumes, :data:`RESUME`), 32 px crops, batch 2, the tests' VGG stand-in (random weights,
#: widths / 8), and the tests' network where the fit starts from scratch (:data:`TINY_NETWORK`); a warm
#: start keeps the recipe's network, so that the shipped network it starts from still loads.
#: Per-image optimization: 32 px, 2 steps, the same VGG; ``compare`` one style weight (its grid
#: is redrawn after every cell). ``distill``: 2 steps on 32 px crops, a student of one residual block.
#: ``serve``: any free port.
VGG = "--vgg-weights random --vgg-width-divisor 8"
SHRINK = {
    name: flags.split()
    for name, flags in {
        "fit": "--trainer.max_steps 1 --trainer.accelerator cpu --trainer.precision 32 --trainer.num_sanity_val_steps 0"
        " --trainer.enable_progress_bar false --data.image_size 32 --data.batch_size 2 --data.num_workers 0"
        " --data.val_size 1 --data.painting_size 32 --data.painting_val_size 1"
        " --model.vgg_weights random --model.vgg_width_divisor 8",
        "optimize": f"--size 32 --iterations 2 {VGG}",
        "compare": f"--size 32 --iterations 2 --style-weights 5 {VGG}",
        "evaluate": f"--size 32 --iterations 2 {VGG}",
        "distill": "--steps 2 --size 32 --crops-per-photo 1 --batch-size 2 --residual-blocks 1",
        "serve": "--port 0",
    }.items()
}
RESUME = ["--trainer.max_steps", "2"]  # fit --ckpt_path last: one step more than the run it resumes
#: A fit from scratch trains the tests' width-8 network of one residual block (tests/conftest.py's
#: ``tiny_fit_args``), so that what the pages then do with its run (five exports, ``evaluate``,
#: ``compare --models``) costs what it costs for that network (docs/benchmarks.md, "The test suite").
TINY_NETWORK = ["--model.network_width", "8", "--model.residual_blocks", "1"]

#: Commands shown that do not run here, and why; each is still parsed (test_docs_commands.py).
DDP = (
    "fastmmd fit --config configs/coco.yaml --config configs/coco/gram.yaml --run_name candy-gram "
    "--model.style_images '[styles/candy.jpg]' --trainer.devices 4 --trainer.strategy ddp"
)
NOT_RUN = {DDP: "four GPUs (Lightning's DDP itself runs on two CPU processes in tests/e2e/test_ddp.py)"}

#: Files the commands read that no page shows how to make, per group: a documented run exported, or,
#: where any network of the kind will do, one of tests/conftest.py's export matrix (``conditioned``:
#: 3 styles and a strength input, built once for the whole suite).
MADE_BY = {
    "conditioning": {
        "four.pt": ["export", "checkpoints/four/last.ckpt", "--output", "four.pt"],  # styles candy, mosaic, ...
        "knob.pt2": "conditioned pt2",
        "knob.onnx": "conditioned onnx",
    },
}

#: The pictures the commands and recipes name (:func:`lay_out`).
PHOTOS = [
    *("photo.jpg", "other.jpg", "more/trip/beach.jpg", "held_out_photos/0.jpg", "held_out_photos/1.jpg"),
    # configs/quickstart.yaml's and configs/coco.yaml's photo folders
    *(f"{folder}/{i}.jpg" for folder in ("photos", "data/samples/photos", "data/coco2014/train2014") for i in range(3)),
]
PAINTINGS = [
    *("painting.jpg", "my_painting.jpg", "a.jpg", "b.jpg", "the_scream.jpg", "starry_night.jpg", "styles/candy.jpg"),
    *("candy.jpg", "mosaic.jpg", "rain_princess.jpg", "woman_with_a_hat.jpg", "data/samples/style.png"),
    *("paintings/0.jpg", "paintings/1.jpg", "paintings/2.jpg", "held_out_paintings/0.jpg", "held_out_paintings/1.jpg"),
]
HUB_PHOTOS = 2

#: The pages' groups: the commands of one never read what another's make.
GROUPS = {"README.md": "readme", "docs/conditioning.md": "conditioning"}  # the rest: "recipes" (one candy-gram run)


def group_of(command: Shown) -> str:
    return GROUPS.get(command.page, "recipes")


def named_outputs(argv: list[str]) -> list[str]:
    """What the command names as its output."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word in ("--output", "--output-dir", "-o", "--save-style")]


def runnable() -> list[Shown]:
    """The commands shown, less :data:`NOT_RUN`, each once: in the first group whose page shows it
    (README.md shows one line twice). A line that a later group's page shows again runs there too
    only where a later command of that group names a file it writes (docs/inference.md's
    ``--save-style painting.npz``, which its next command reads): ``export starry_night --format
    pt2`` (a full-size network through torch.export) runs once."""
    shown = [c for c in documented_commands() if c.line not in NOT_RUN]
    runs, seen = [], set()
    for i, command in enumerate(shown):
        group = group_of(command)
        if (group, command.line) in seen:
            continue
        if any(line == command.line for _, line in seen):
            read_later = {word for later in shown[i + 1 :] if group_of(later) == group for word in later.argv}
            if not read_later & set(named_outputs(list(command.argv))):
                continue
        seen.add((group, command.line))
        runs.append(command)
    return runs


RUN = runnable()
#: Rough CPU seconds of each group's commands, which its first test runs (tests/conftest.py's ``heavy``:
#: it starts a pytest-xdist worker's share; docs/benchmarks.md, "The test suite").
GROUP_SECONDS = {"recipes": 33, "readme": 10, "conditioning": 6}


def as_params(commands: list[Shown]) -> list:
    """``commands`` as the parameters of a test, named by page and line; each group's first marked ``heavy``."""
    first: dict[str, Shown] = {}
    for command in commands:
        first.setdefault(group_of(command), command)
    heavy = {group: pytest.mark.heavy(seconds) for group, seconds in GROUP_SECONDS.items()}
    return [
        pytest.param(c, id=f"{c.page} {c.line}", marks=[heavy[group_of(c)]] if first[group_of(c)] is c else [])
        for c in commands
    ]


def distilled_start(argv: list[str]) -> bool:
    """Whether ``fastmmd fit ARGV`` starts from a student that a documented ``distill`` writes."""
    students = {out for c in RUN if c.argv[0] == "distill" for out in named_outputs(list(c.argv))}
    return any(flag == "--model.init_from" and value in students for flag, value in itertools.pairwise(argv))


def phase(command: Shown) -> float:
    """When a command runs: photos, training, distillation (then a fit that trains its student on),
    exports, then (after :data:`MADE_BY`) everything else."""
    name = command.argv[0]
    if name == "export" and "--info" not in command.argv:
        return 3
    if name == "fit" and distilled_start(list(command.argv)):
        return 2.5
    return {"data": 0, "fit": 1, "distill": 2}.get(name, 5)


def warm_start(argv: list[str], cwd: Path) -> bool:
    """Whether ``fastmmd fit ARGV`` run in ``cwd`` starts from another network's weights: the last
    ``model.init_from`` that its ``--config`` files and flags give, in their order, is not null."""
    init = None
    for flag, value in itertools.pairwise(argv):
        if flag == "--config":
            init = ((yaml.safe_load((cwd / value).read_text()) or {}).get("model") or {}).get("init_from", init)
        elif flag == "--model.init_from":
            init = value
    return init not in (None, "null")


def shrunk(command: Shown, cwd: Path) -> list[str]:
    """The words the command runs with in ``cwd``: as bash passes them, plus :data:`SHRINK` (and
    for a ``fit``, :data:`RESUME` where it resumes, :data:`TINY_NETWORK` where it starts from scratch)."""
    argv = command.expanded(cwd) + SHRINK.get(command.argv[0], [])
    if command.argv[0] == "fit":
        argv += RESUME if "--ckpt_path" in argv else []
        argv += [] if warm_start(argv, cwd) else TINY_NETWORK
        argv += ["--model.residual_blocks", "1"] if distilled_start(argv) else []  # the shrunk distill's student
    return argv


# ----------------------------------------------------------------------------- the folder the commands run in
def lay_out(work: Path, hub: Path) -> None:
    """The stand-ins in ``work``: :data:`PHOTOS` (48x40 px) and :data:`PAINTINGS` (64x56 px), generated
    pictures; ``clip.mp4`` (6 frames, with sound), ``phone.mov`` (turned 90 degrees), ``frames/``
    (3 PNGs), ``runs/tiny.ckpt`` (conftest.write_tiny_checkpoint), links to the repository's
    ``configs/`` and to the shipped ``checkpoints/base.pt`` and ``starry_night.pt`` (the recipes'
    warm starts). ``hub``: :data:`HUB_PHOTOS` photos in an imagefolder, the Hub's COCO here."""
    from clips import write_clip

    for i, name in enumerate(PHOTOS + PAINTINGS):
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(*((48, 40) if name in PHOTOS else (64, 56)), seed=i).save(path)
    write_clip(work / "clip.mp4", frames=6)
    write_clip(work / "phone.mov", frames=6, rotation=90, audio=None)
    (work / "frames").mkdir()
    for i in range(3):
        synthetic_image(40, 32, seed=i).save(work / "frames" / f"{i:03d}.png")
    write_tiny_checkpoint(work / "runs" / "tiny.ckpt")
    (work / "configs").symlink_to(REPO / "configs")
    (work / "checkpoints").mkdir()
    for name in ("base.pt", "starry_night.pt"):
        (work / "checkpoints" / name).symlink_to(REPO / "checkpoints" / name)
    hub.mkdir()
    for i in range(HUB_PHOTOS):
        synthetic_image(48, 40, seed=100 + i).save(hub / f"{i}.jpg")


def files(work: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``work`` (links not followed): its modification time and size."""
    found = {}
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink():
                stat = path.stat()
                found[str(path.relative_to(work))] = (stat.st_mtime_ns, stat.st_size)
    return found


@contextlib.contextmanager
def stand_in_hub(hub: Path):
    """``fastmmd data coco`` streams ``hub`` (an imagefolder) where it would stream COCO from the Hub."""
    import datasets

    from fastmmd.apps import fetch

    load = datasets.load_dataset

    def from_hub(path, *args, split=None, streaming=False, **kwargs):
        assert path == fetch.COCO and split == "train" and streaming, (path, split, streaming)
        return load("imagefolder", data_dir=str(hub), split=split, streaming=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch, "hub_reachable", lambda: True)
        patch.setattr(datasets, "load_dataset", from_hub)
        yield


@contextlib.contextmanager
def serving_one_request(answers: list):
    """``fastmmd serve`` serves until it has answered ``GET /api/styles`` (its models' names go to ``answers``)."""
    from fastmmd.apps.serve import app as serve_app
    from fastmmd.apps.serve import url_of

    serve_forever = serve_app.serve_forever

    def serve_once(app, sock, **kwargs):
        box: list = []

        def ask() -> None:
            deadline = time.monotonic() + 120
            while not (box and box[0].started) and time.monotonic() < deadline:
                time.sleep(0.02)
            try:
                with urllib.request.urlopen(url_of(sock) + "api/styles", timeout=60) as response:
                    answers.append([m["name"] for m in json.loads(response.read())["models"]])
            finally:
                if box:
                    box[0].should_exit = True

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        serve_forever(app, sock, server_box=box, **kwargs)
        asker.join(timeout=60)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serve_app, "serve_forever", serve_once)
        yield


def run_in(work: Path, argv: list[str]) -> dict:
    """``fastmmd ARGV`` in this process with ``work`` as the current folder: its exit code, what it
    printed, the files it wrote (new or changed), what ``serve`` answered."""
    from fastmmd.__main__ import main

    before, cwd, cpu = files(work), os.getcwd(), time.process_time()
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    out, err, answers = io.StringIO(), io.StringIO(), []
    try:
        os.chdir(work)
        serving = serving_one_request(answers) if argv[0] == "serve" else contextlib.nullcontext()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), serving:
            code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    except Exception as error:  # noqa: BLE001 - recorded: the command's test shows it
        code = 1
        err.write(f"\n{type(error).__name__}: {error}")
    finally:
        os.chdir(cwd)
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)
    after = files(work)
    return {
        "argv": argv,
        "code": code,
        "out": out.getvalue(),
        "err": err.getvalue(),
        "served": answers,
        "wrote": sorted(p for p, stamp in after.items() if before.get(p) != stamp),
        "cpu_s": round(time.process_time() - cpu, 2),
    }  # this process's CPU time: what the command cost


def run_group(name: str, root: Path, made: dict[str, Callable[[], Path]]) -> None:
    """Runs group ``name``'s commands in ``root/work``; their records go to ``root/results.json``."""
    work, hub = root / "work", root / "hub"
    lay_out(work, hub)
    results: dict[str, dict] = {}
    commands = sorted((c for c in RUN if group_of(c) == name), key=phase)
    with stand_in_hub(hub) if any(c.argv[0] == "data" for c in commands) else contextlib.nullcontext():
        for command in commands:
            if phase(command) == 5 and "made by" not in results:
                results["made by"] = {}
                for file, how in MADE_BY.get(name, {}).items():
                    if file.endswith(".onnx") and not onnx_available():
                        continue
                    if isinstance(how, list):
                        results["made by"][file] = run_in(work, how)
                    else:
                        shutil.copy(made[how](), work / file)
            results[command.line] = run_in(work, shrunk(command, work))
    (root / "results.json").write_text(json.dumps(results, indent=1))


@pytest.fixture(scope="session")
def docs_run(tmp_path_factory, conditioned):
    """``docs_run(group)``: (what :func:`run_in` recorded for each of its commands, by line; its folder)."""
    made = {f"conditioned {kind}": lambda kind=kind: conditioned[kind] for kind in ("pt2", "onnx")}
    done: dict[str, tuple[dict, Path]] = {}

    def get(name: str) -> tuple[dict, Path]:
        if name not in done:
            root = built_once(tmp_path_factory, f"docs_run_{name}", lambda root: run_group(name, root, made))
            done[name] = json.loads((root / "results.json").read_text()), root / "work"
        return done[name]

    return get


# ----------------------------------------------------------------------------- the checks
def check_outputs(command: Shown, result: dict, work: Path) -> None:
    """The command wrote what it names (``--output``, a run's checkpoint, ``stylized/``...), or
    printed what it shows and wrote nothing."""
    argv, wrote = result["argv"], result["wrote"]
    name = argv[0]
    if name == "models" or "--info" in argv or "--print_config" in argv:
        assert result["out"].strip() and not wrote, result
        return
    if name == "serve":
        assert result["served"] and result["served"][0], result
        return
    assert wrote, f"{command.line} wrote nothing"
    for output in named_outputs(argv):
        assert (work / output).exists(), output
        assert any(Path(output) in (Path(w), *Path(w).parents) for w in wrote), (output, wrote)
    if name == "fit":
        run = argv[argv.index("--run_name") + 1] if "--run_name" in argv else None
        ckpts = [w for w in wrote if w.endswith("/last.ckpt") and (run is None or w == f"checkpoints/{run}/last.ckpt")]
        assert len(ckpts) == 1, wrote
        if "--ckpt_path" in argv:  # resumed: one step more than the run it continued
            from fastmmd.model.files import read_checkpoint

            assert read_checkpoint(work / ckpts[0])["global_step"] == 2
    if name == "stylize" and not named_outputs(argv):
        assert any(w.startswith("stylized/") for w in wrote), wrote
    if name == "data":
        assert sum(w.startswith("photos/") for w in wrote) == HUB_PHOTOS, wrote


def require_extras(command: Shown) -> None:
    """Skips (one line, with the fix) a command that needs an optional extra of fastmmd not installed here."""
    if command.argv[0] == "serve":
        pytest.importorskip("fastapi", reason="fastmmd serve needs FastAPI: pip install -e '.[serve]'")
        pytest.importorskip("uvicorn", reason="fastmmd serve needs uvicorn: pip install -e '.[serve]'")
    if any(word.endswith(".onnx") for word in command.argv):  # exported here, or read from such an export
        require_onnx()


@pytest.mark.slow  # the first test of a group runs all of its commands: docs/benchmarks.md, "The test suite"
@pytest.mark.parametrize("command", as_params(RUN))
def test_a_documented_command_runs(command, docs_run):
    require_extras(command)
    results, work = docs_run(group_of(command))
    result = results[command.line]
    shown = f"{command.page}: {command.line}\nran: {result['argv']}\nexit {result['code']}\n{result['err'][-3000:]}"
    if "--bf16" in command.argv and not torch.cuda.is_available():
        from fastmmd.base.precision import cpu_bf16_is_fast

        if not cpu_bf16_is_fast():  # refused in one line on a CPU that would crawl (docs/safety.md)
            assert result["code"] == 2 and "without bf16 instructions" in result["err"], shown
            return
    assert result["code"] == 0, shown
    check_outputs(command, result, work)


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(MADE_BY))
def test_the_files_made_from_the_documented_runs(group, docs_run):
    results, work = docs_run(group)
    for file, how in MADE_BY[group].items():
        if isinstance(how, list):
            assert results["made by"][file]["code"] == 0, results["made by"][file]
        assert (work / file).is_file() or (file.endswith(".onnx") and not onnx_available()), file


def test_the_not_run_table_names_only_commands_shown():
    lines = {c.line for c in documented_commands()}
    assert set(NOT_RUN) <= lines, set(NOT_RUN) - lines
    ran = [(group_of(c), c.line) for c in RUN]  # every other line shown runs, at most once in each page group
    assert {line for _, line in ran} == lines - set(NOT_RUN) and len(set(ran)) == len(ran)


# ----------------------------------------------------------------------------- the quickstart
@pytest.mark.slow
@pytest.mark.heavy(8)
def test_the_quickstart_runs_every_step(tmp_path):
    """``bash scripts/quickstart.sh`` (the README's first command) from a copy of the repository's
    layout (the script and ``configs/``), with its knobs: this interpreter, 4 sample photos of 64 px,
    a tiny fit, and its fastmmd commands in this process (:mod:`relay`). Every step runs in order
    (``set -e``: a failing one stops it) and leaves what the next step and the reader use."""
    from relay import serve

    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "quickstart.sh", checkout / "scripts")
    (checkout / "configs").symlink_to(REPO / "configs")
    socket_path = tmp_path / "relay.sock"
    env = {k: v for k, v in os.environ.items() if k != "FASTMMD_ZOO"}
    env.update(
        QUICKSTART_PYTHON=sys.executable,
        QUICKSTART_SAMPLE_ARGS="--photos 4 --size 64",
        QUICKSTART_FIT_ARGS=" ".join(SHRINK["fit"] + TINY_NETWORK),  # configs/quickstart.yaml starts from scratch
        QUICKSTART_FASTMMD=f"{sys.executable} {TESTS / 'relay.py'} {socket_path}",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    commands = []

    def run(argv: list[str], cwd: Path) -> tuple[int, str, str]:
        result = run_in(cwd, argv)
        commands.append(argv[0])
        return result["code"], result["out"], result["err"]

    with open(tmp_path / "stdout", "w+") as out, open(tmp_path / "stderr", "w+") as err:
        process = subprocess.Popen(
            ["bash", str(checkout / "scripts" / "quickstart.sh")], env=env, stdout=out, stderr=err
        )
        try:
            code = serve(process, socket_path, run)
        finally:
            if process.poll() is None:
                process.kill()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert code == 0, stderr[-4000:]
    assert commands == ["fit", "export", "export", "export", "stylize", "models", "stylize"]
    result = checkout / "out" / "quickstart"
    assert len(list((checkout / "data" / "samples" / "photos").iterdir())) == 4
    assert (checkout / "checkpoints" / "quickstart" / "last.ckpt").is_file()
    assert (result / "style.pt").is_file() and (result / "style.pt2").is_file()
    assert "torchscript" in stdout and "starry_night" in stdout  # export --info; models
    for folder in ("stylized", "the_scream"):
        assert len(list((result / folder).glob("*.png"))) == 4, folder
    assert stdout.rstrip().splitlines()[-1].startswith("done: stylized images")
    assert sorted(p.name for p in checkout.iterdir()) == ["checkpoints", "configs", "data", "out", "scripts"]
