"""The style zoo: names resolve to shipped files everywhere a model is taken, and the shipped files hold up.

Two parts. A fake zoo (a tiny network exported to int8 ``.pt``/``.pt2``, as the real zoo ships, with fastmmd's own export,
and a ``zoo.json`` written here with :func:`fastmmd.infer.zoo.checksum`, as ``scripts/build_zoo.py``
does) checks resolution, listings and errors. Then the real zoo in ``checkpoints/`` (skipped only
while ``checkpoints/zoo.json`` does not exist): every file describes itself, stylizes odd sizes,
agrees across formats and still looks as recorded (checksum) through fastmmd; that every file loads
with torch alone: tests/e2e/test_shipped_zoo.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import synthetic_image
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.infer.zoo import (
    CHECKSUM_SEED,
    CHECKSUM_SHAPE,
    ENV_VAR,
    MANIFEST,
    checksum,
    checksum_difference,
    describe_styles,
    read_manifest,
    resolve_model,
    styles_table,
    zoo_dir,
)

REPO = Path(__file__).resolve().parents[2]
REAL_ZOO = REPO / "checkpoints"
#: the one network file beside the styles that is not a style: configs/cpu.yaml's warm start (checkpoints/README.md)
BASE = "base.pt"
MAX_ZOO_BYTES = 40e6


def _entry(files: dict[str, str], check: dict) -> dict:
    """A manifest entry in ``scripts/build_zoo.py``'s schema."""
    return {"title": "Tiny Test", "painter": "A. Tester", "year": "2024", "source": "generated", "license": "public domain",
            "style_image": "tiny_style.png", "loss": "gram", "style_weight": 5.0,
            "config": ["configs/quickstart.yaml"],
            "training": {"machine": "test", "minutes": 0.5, "steps": 3, "batch_size": 2, "image_size": 32},
            "files": files,
            "scores": {"size": 32, "photos": 2, "style_swd": 0.2, "content": 0.4, "optimize_style_swd": 0.1,
                       "optimize_content": 0.5, "style_ratio": 2.0, "content_ratio": 0.8},
            "checksum": check}


@pytest.fixture(scope="module")
def fake_zoo(tmp_path_factory, export_matrix) -> Path:
    """A zoo folder: ``tiny`` (.pt and .pt2, int8 weights as the real zoo's: the session's export matrix) and
    ``mosaic`` (.pt only, the same file)."""
    import shutil

    from fastmmd.infer.export import load_exported

    root = tmp_path_factory.mktemp("zoo")
    int8 = export_matrix("single", "int8")
    for kind, suffix in (("torchscript", ".pt"), ("pt2", ".pt2")):
        shutil.copyfile(int8[kind], root / f"tiny{suffix}")
    program, _ = load_exported(root / "tiny.pt")  # our own file: its program, as build_zoo.py checks it
    check = checksum(program)
    styles = {"tiny": _entry({"torchscript": "tiny.pt", "pt2": "tiny.pt2"}, check),
              "mosaic": {**_entry({"torchscript": "tiny.pt"}, check), "title": "Mosaic"}}
    (root / MANIFEST).write_text(json.dumps({"format_version": 1, "styles": styles}, indent=2))
    return root


@pytest.fixture
def zoo(fake_zoo: Path, monkeypatch) -> Path:
    monkeypatch.setenv(ENV_VAR, str(fake_zoo))
    return fake_zoo


def _one_line_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- resolution
def test_names_resolve_to_shipped_files_and_paths_stay_paths(zoo, tmp_path, monkeypatch):
    assert zoo_dir() == zoo
    assert resolve_model("tiny") == zoo / "tiny.pt"
    assert resolve_model("Tiny") == zoo / "tiny.pt"  # case-insensitive
    assert resolve_model("TINY:pt2") == zoo / "tiny.pt2"
    assert resolve_model("tiny:pt") == zoo / "tiny.pt"
    assert resolve_model("mosaic") == zoo / "tiny.pt"
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    assert resolve_model(own) == own and resolve_model(str(own)) == own  # a path is never looked up
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_bytes(b"x")
    assert resolve_model("tiny") == Path("tiny")  # an existing file wins over a style of the same name


@pytest.mark.parametrize("spec, needle", [
    ("tinny", "did you mean 'tiny'?"),
    ("tinny:pt2", "did you mean 'tiny'?"),
    ("tiny.pt", "does not exist; did you mean the shipped style 'tiny'?"),
    ("nothing/like/this.ckpt", "does not exist"),
    ("mosaic:pt2", "has no .pt2 file; use 'mosaic'; `fastmmd export mosaic --format pt2` writes one"),
    ("x" * 5000, "xxx...' is neither a model file"),
    ("x" * 5000 + ".pt", "does not exist"),
])
def test_unknown_names_say_what_exists(zoo, spec, needle):
    with pytest.raises(UserError) as exc:
        resolve_model(spec)
    assert needle in str(exc.value)


def test_default_zoo_is_beside_the_package(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert zoo_dir() == REAL_ZOO


def test_missing_or_broken_manifest_matters_only_for_names(tmp_path, monkeypatch, fake_zoo):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(empty))
    with pytest.raises(UserError, match="no zoo.json in .*FASTMMD_ZOO"):
        resolve_model("tiny")
    assert resolve_model(fake_zoo / "tiny.pt") == fake_zoo / "tiny.pt"
    broken = {"not json": "{", "old format": json.dumps({"format_version": 0, "styles": {}}),
              "outside the folder": json.dumps({"format_version": 1, "styles": {"x": {"files": {"torchscript": "../x.pt"}}}}),
              "wrong suffix": json.dumps({"format_version": 1, "styles": {"x": {"files": {"torchscript": "x.pkl"}}}}),
              "odd name": json.dumps({"format_version": 1, "styles": {"X Y": {"files": {"torchscript": "x.pt"}}}})}
    for why, text in broken.items():
        (empty / MANIFEST).write_text(text)
        with pytest.raises(UserError, match="manifest .* is broken") as exc:
            resolve_model("x")
        assert "\n" not in str(exc.value), why
    (empty / MANIFEST).write_text(json.dumps({"format_version": 1, "styles": {"gone": {"files": {"torchscript": "gone.pt"}}}}))
    with pytest.raises(UserError, match="'gone.pt' is missing"):
        resolve_model("gone")


# ----------------------------------------------------------------------------- listing
def test_models_and_stylize_list_print_the_same_table(zoo, capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert main(["stylize", "--list"]) == 0
    assert capsys.readouterr().out == table
    header, tiny = table.splitlines()[0], next(line for line in table.splitlines() if line.startswith("tiny "))
    assert header.split()[:3] == ["name", "painting", "loss"]
    for text in ("Tiny Test, A. Tester, 2024", "gram", "2.00", "0.80", "0.5 min", ".pt .pt2 ("):
        assert text in tiny, (text, tiny)
    assert "fastmmd stylize NAME photo.jpg" in table
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mosaic", "tiny"] and rows[1]["style_ratio"] == 2.0
    assert rows == describe_styles()


def test_listing_without_a_zoo_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert main(["models"]) == 0
    assert main(["stylize", "--list"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.count("\n") == 2 and "no shipped styles" in out.out


# ----------------------------------------------------------------------------- every MODEL takes a name
def test_stylize_by_name(zoo, tmp_path, capsys):
    image = tmp_path / "odd.png"
    synthetic_image(53, 37, seed=3).save(image)
    assert main(["stylize", "tiny", str(image), "-o", str(tmp_path / "out"), "-q"]) == 0
    result = Image.open(tmp_path / "out" / "odd_stylized.png")
    assert result.size == (53, 37) and result.text["fastmmd:model"] == "tiny.pt"
    import fastmmd

    for name in ("tiny", "tiny:pt2"):
        assert fastmmd.load_stylizer(name, device="cpu")(synthetic_image(53, 37)).size == (53, 37)


def test_unknown_name_is_one_line_with_a_hint(zoo, tmp_path, capsys):
    image = tmp_path / "a.png"
    synthetic_image(20, 20).save(image)
    for argv in (["stylize", "tinny", str(image), "-o", str(tmp_path / "out")], ["export", "--info", "tinny"],
                 ["compare", "--content", str(image), "--style", str(image), "--models", "tinny",
                  "--output-dir", str(tmp_path / "cmp")]):
        assert "did you mean 'tiny'?" in _one_line_error(argv, capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cmp").exists()
    assert "give a MODEL" in _one_line_error(["stylize", "tiny"], capsys)


def test_export_info_by_name(zoo, capsys):
    for name, fmt in (("tiny", "torchscript"), ("tiny:pt2", "pt2")):
        assert main(["export", "--info", name]) == 0
        meta = json.loads(capsys.readouterr().out)
        assert meta["format"] == fmt and meta["dtype"] == "int8"


def test_export_by_name_writes_the_style_in_another_format_in_the_current_folder(zoo, tmp_path, monkeypatch, capsys):
    """``fastmmd export NAME --format FORMAT`` (the README's ``--format pt2``; TorchScript here, the
    quickest export): the shipped style's network (its .pt, weights only) in its own storage,
    written as NAME.SUFFIX where the user stands, never into the zoo folder."""
    from fastmmd.model.files import read_metadata

    before = {p.name: p.stat().st_mtime_ns for p in zoo.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert main(["export", "Tiny:pt", "--format", "torchscript"]) == 0
    assert capsys.readouterr().out.startswith("wrote tiny.pt (torchscript, int8,")
    meta = read_metadata(tmp_path / "tiny.pt")
    assert meta["format"] == "torchscript" and meta["dtype"] == "int8"
    assert meta["source_checkpoint"] == read_metadata(zoo / "tiny.pt")["source_checkpoint"]
    assert {p.name: p.stat().st_mtime_ns for p in zoo.iterdir()} == before


def test_evaluate_by_name(zoo, make_image, tmp_path):
    photo, style = make_image("photo.png", 48, 40, seed=0), make_image("art.png", 40, 48, seed=1)
    out = tmp_path / "eval"
    assert main(["evaluate", "tiny", "tiny:pt2", "--content", str(photo), "--style", str(style), "--vgg-weights", "random",
                 "--vgg-width-divisor", "8", "--size", "32", "--iterations", "1", "--precision", "32", "--no-progress",
                 "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["tiny.pt", "tiny.pt2"]


# ----------------------------------------------------------------------------- checksum
def test_checksum_is_the_same_through_fastmmd_and_catches_a_changed_look(zoo):
    from fastmmd.infer.stylize import load_model
    from fastmmd.model.files import read_network
    from fastmmd.model.runtime import ExportedStylizer

    expected = read_manifest()["tiny"]["checksum"]
    assert expected["seed"] == CHECKSUM_SEED and expected["shape"] == list(CHECKSUM_SHAPE)
    for name in ("tiny", "tiny:pt2"):  # what fastmmd runs (weights read, its own network, in fp16)
        module, _ = load_model(resolve_model(name), torch.device("cpu"), torch.float16, False)
        assert checksum_difference(expected, checksum(module)) <= expected["tolerance"]
    net, _ = read_network(zoo / "tiny.pt")
    with torch.no_grad():
        net.decoder[-1][1].bias.add_(0.2)  # the last conv: a colour shift
    changed = checksum(ExportedStylizer(net).to(torch.float16))
    assert checksum_difference(expected, changed) > 10 * expected["tolerance"]
    assert checksum_difference(expected, {**changed, "seed": 1}) == float("inf")


# ----------------------------------------------------------------------------- the shipped zoo
@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    """The real manifest (the default zoo folder): the repository ships it, so its absence is a failure."""
    assert (REAL_ZOO / MANIFEST).is_file(), "checkpoints/zoo.json is missing (scripts/build_zoo.py writes it)"
    styles = {k: v for k, v in read_manifest(REAL_ZOO).items() if v.get("kind") != "arbitrary"}
    assert styles, "checkpoints/zoo.json lists no styles"
    return styles


@pytest.fixture(scope="module")
def shipped_arbitrary() -> dict[str, dict]:
    """The real manifest's arbitrary-style networks (for any painting)."""
    return {k: v for k, v in read_manifest(REAL_ZOO).items() if v.get("kind") == "arbitrary"}


@pytest.fixture
def real_zoo(shipped, monkeypatch) -> dict[str, dict]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    return shipped


def test_shipped_manifest_is_complete(real_zoo, shipped_arbitrary):
    assert len(real_zoo) >= 6, f"the zoo ships {len(real_zoo)} styles, not at least 6"
    losses = {e["loss"] for e in real_zoo.values()}
    assert {"gram", "linear", "bn"} <= losses and any("+" in loss for loss in losses), losses  # the paper's point
    recipes = {p.stem for p in (REPO / "configs" / "zoo").glob("*.yaml")}
    assert recipes <= set(real_zoo), f"recipes without a shipped style: {sorted(recipes - set(real_zoo))}"
    listed = {f for entry in [*real_zoo.values(), *shipped_arbitrary.values()] for f in entry["files"].values()}
    on_disk = {p.name for p in REAL_ZOO.iterdir() if p.suffix in (".pt", ".pt2", ".onnx")} - {BASE}
    assert listed == on_disk, f"listed only: {sorted(listed - on_disk)}; unlisted: {sorted(on_disk - listed)}"
    for name, e in real_zoo.items():
        # the .pt (torch, GPUs) and the .onnx (the CPU default, no torch); a .pt2 on demand (export --format pt2)
        assert set(e["files"]) == {"torchscript", "onnx"} and "onnx" in e, name
        quality = e["onnx"]["quality"]  # the .onnx against the .pt on held-out photos (scripts/bench_quality.py)
        assert quality["reference"] == name and quality["photos"] >= 10, name
        for ratio in ("style_ratio", "content_ratio"):  # the bar: no more than 5 % farther than the full
            assert quality[ratio] <= 1.05, (name, ratio, quality[ratio])  # network (a student may sit closer)
        for key in ("title", "painter", "year", "source", "license", "style_image", "loss"):
            assert isinstance(e.get(key), str) and e[key], (name, key)
        assert e["style_weight"] > 0, name
        assert all((REPO / c).is_file() for c in e["config"]), (name, e["config"])
        assert {"minutes", "steps", "batch_size", "image_size"} <= set(e["training"]), name
        assert e["training"]["cpu_minutes"] > 0 and e["training"]["cpu_seconds_per_step"] > 0, name  # on the 2-core CPU
        assert {"style_ratio", "content_ratio", "photos", "size"} <= set(e["scores"]), name
        for tune in e["training"].get("fine_tunes") or []:  # trained on from the shipped network since
            assert tune["steps"] > 0 and tune["minutes"] > 0 and tune["machine"] and len(tune["from"]["sha256"]) == 64, name
            lattice, held_out = tune["lattice"], tune["held_out"]  # measured against the network it replaced
            assert lattice["photos"] >= 10 and held_out["photos"] >= 10, name
            assert {"period4", "period2", "grid_lock"} <= set(lattice["before"]) & set(lattice["after"]), name
        c = e["checksum"]
        assert c["seed"] == CHECKSUM_SEED and c["shape"] == list(CHECKSUM_SHAPE) and 0 < c["tolerance"] <= 0.01, name
        assert len(c["mean"]) == len(c["std"]) == 3, name


def test_shipped_zoo_fits_the_repository_budget(real_zoo, shipped_arbitrary):
    files = [REAL_ZOO / f for e in [*real_zoo.values(), *shipped_arbitrary.values()] for f in e["files"].values()]
    files += [REAL_ZOO / MANIFEST, REAL_ZOO / BASE]
    total = sum(f.stat().st_size for f in files)
    assert total <= MAX_ZOO_BYTES, f"the zoo is {total / 1e6:.1f} MB, over {MAX_ZOO_BYTES / 1e6:.0f} MB"


def test_shipped_files_through_fastmmd(real_zoo):
    from fastmmd.infer.stylize import load_model, load_stylizer
    from fastmmd.model.files import read_metadata, read_network

    image = synthetic_image(53, 37, seed=5)
    for name, entry in real_zoo.items():
        path = REAL_ZOO / entry["files"]["torchscript"]
        meta = read_metadata(path)
        assert meta["format"] == "torchscript" and meta["dtype"] == entry["weights"] == "int8", name
        assert meta["storage_max_abs_diff"] < 0.05, name  # int8 weights: outputs move by ~0.001
        for key in ("fastmmd_version", "torch_version", "input", "network", "parameters", "min_size", "style_images",
                    "loss", "style_weight", "content_weight", "training_steps", "training"):
            assert meta.get(key) is not None, (name, key)
        assert entry["style_image"] in [Path(s).name for s in meta["style_images"]], name
        assert (meta["loss"], meta["style_weight"]) == (entry["loss"], entry["style_weight"]), name
        tunes = entry["training"].get("fine_tunes") or []  # trained on since (scripts/build_zoo.py --fine-tuned)
        assert meta["training_steps"] == (tunes[-1] if tunes else entry["training"])["steps"], name
        if tunes:  # the file says where it started, and the manifest how
            assert meta["training"]["init_from"] == tunes[-1]["from"]["file"] == entry["files"]["torchscript"], name
            assert meta["training"]["stability_weight"] == tunes[-1]["stability"]["weight"], name
        assert meta["min_size"] <= min(image.size), name
        read_network(path)
        for spec in (name, f"{name}:pt"):  # by name, from the default zoo folder (load_stylizer: the torch path)
            assert load_stylizer(spec, device="cpu")(image).size == image.size, spec
        with pytest.raises(UserError, match=f"no .pt2 file; .*`fastmmd export {name} --format pt2` writes one"):
            resolve_model(f"{name}:pt2")
        module, _ = load_model(resolve_model(name), torch.device("cpu"), None, False)  # as stored (int8: float32 compute)
        diff = checksum_difference(entry["checksum"], checksum(module))
        assert diff <= entry["checksum"]["tolerance"], f"{name}: fastmmd's network moved by {diff:.4f}"


def test_export_info_of_a_shipped_style_reads_its_metadata_without_torch(real_zoo, tmp_path, monkeypatch):
    """``export --info NAME`` answers from the archive's JSON member when the manifest's SHA-256 vouches for
    the file, with what the whole-file check reads; a changed file, a path or ``$FASTMMD_ZOO`` get ``None``."""
    import shutil

    from fastmmd.infer.zoo import file_sha256, shipped_metadata, verified_shipped_file
    from fastmmd.model.files import read_metadata

    monkeypatch.delenv(ENV_VAR, raising=False)
    for name, entry in real_zoo.items():
        for kind, spec in (("torchscript", name), ("torchscript", f"{name}:pt")):
            path = REAL_ZOO / entry["files"][kind]
            assert entry["sha256"][kind] == file_sha256(path), f"{name}: zoo.json's sha256 is stale; run build_zoo.py"
            assert shipped_metadata(spec) == read_metadata(path), (name, kind)
    name = sorted(real_zoo)[0]
    assert shipped_metadata(str(REAL_ZOO / real_zoo[name]["files"]["torchscript"])) is None  # a path: checked whole
    changed = tmp_path / "zoo"
    shutil.copytree(REAL_ZOO, changed)
    with open(changed / real_zoo[name]["files"]["torchscript"], "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr("fastmmd.infer.zoo.zoo_dir", lambda: changed)
    assert shipped_metadata(name) is None and verified_shipped_file(f"{name}:onnx") == changed / f"{name}.onnx"
    monkeypatch.setenv(ENV_VAR, str(changed))
    assert verified_shipped_file(f"{name}:onnx") is None  # another zoo's manifest vouches for nothing


def test_the_shipped_base_is_the_cpu_recipes_start_and_reads_as_a_plain_network():
    """configs/cpu.yaml starts new styles from checkpoints/base.pt: it must exist, be what the recipe
    names, and load through the safe reader (weights only) into the recipe's network layout."""
    import yaml

    from fastmmd.model.files import read_network

    recipe = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())["model"]
    assert recipe["init_from"] == f"checkpoints/{BASE}"
    network, description = read_network(REAL_ZOO / BASE)
    assert (network.width, network.residual_blocks) == (recipe["network_width"], recipe["residual_blocks"])
    assert sum(p.numel() for p in network.parameters()) == 1_750_915
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y = network(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_the_shipped_arbitrary_network_paints_any_painting_and_looks_as_recorded(shipped_arbitrary, monkeypatch):
    """checkpoints/arbitrary.pt: listed apart from the styles, read by the safe reader, an
    arbitrary-style network that takes a painting (and refuses to run without one), scored on
    paintings it never saw, and its output on a fixed photo and fixed painting statistics as recorded."""
    from fastmmd.infer.stylize import load_model, load_stylizer
    from fastmmd.model.files import read_metadata, read_network

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert "arbitrary" in shipped_arbitrary, "the zoo ships no arbitrary-style network"
    entry = shipped_arbitrary["arbitrary"]
    path = REAL_ZOO / entry["files"]["torchscript"]
    meta = read_metadata(path)
    assert meta["network"]["style_embedding"] > 0 and meta["dtype"] == entry["weights"] == "int8"
    assert meta["training_steps"] == entry["training"]["steps"] > 0
    assert {"style_ratio", "content_ratio", "photos", "paintings", "size"} <= set(entry["scores"])
    net, _ = read_network(path)
    module, _ = load_model(resolve_model("arbitrary"), torch.device("cpu"), None, False)
    diff = checksum_difference(entry["checksum"], checksum(module, net.style_features))
    assert diff <= entry["checksum"]["tolerance"], f"arbitrary: fastmmd's network moved by {diff:.4f}"
    photo, painting = synthetic_image(53, 37, seed=5), synthetic_image(64, 48, seed=6)
    stylizer = load_stylizer("arbitrary", device="cpu")
    assert stylizer(photo, style=painting).size == photo.size
    with pytest.raises(UserError, match="give a painting"):
        stylizer(photo)


def test_shipped_onnx_files_pass_the_onnx_checks_and_look_as_recorded(real_zoo):
    """Each style's .onnx (its own network, or one distilled from it; ``scripts/build_zoo.py``): its
    SHA-256 is recorded (the fast path hands it to onnxruntime unparsed only then), it passes the ONNX
    checks and the memory bound that are then skipped, states its int8 compute's parity, and its
    output looks as recorded."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from fastmmd.infer.export import load_exported
    from fastmmd.infer.quantize import MEAN_DIFF_TOLERANCE
    from fastmmd.infer.zoo import file_sha256, verified_shipped_file
    from fastmmd.model.files import OnnxMemoryBound, check_onnx_graph, read_metadata

    listing = {r["name"]: r for r in describe_styles(REAL_ZOO)}  # what fastmmd models says of each style
    for name, entry in real_zoo.items():
        path = REAL_ZOO / entry["files"]["onnx"]
        assert entry["sha256"]["onnx"] == file_sha256(path), f"{name}: zoo.json's sha256 is stale; run build_zoo.py --fast"
        assert verified_shipped_file(f"{name}:onnx") == path
        check_onnx_graph(onnx.load_model_from_string(path.read_bytes()), path)
        record = entry["onnx"]
        listed = listing[name]
        assert listed["student"] == bool(record.get("distillation")), name
        if record.get("distillation"):  # a student of the style's own network
            assert record["distillation"]["teacher"] == entry["files"]["torchscript"], name
            assert ".onnx (student)" in styles_table([listed], REAL_ZOO), name
        else:  # the style's own network: the same weights as its .pt
            assert record["network"] == read_metadata(REAL_ZOO / entry["files"]["torchscript"])["network"], name
        module, meta = load_exported(path)
        assert meta["format"] == "onnx" and entry["style_image"] in [Path(s).name for s in meta["style_images"]]
        assert record["compute"] == meta.get("compute", "float32"), name
        if record["compute"] == "int8":  # stated parity, within the export's bound (fastmmd.infer.quantize)
            assert meta["int8_compute"] == record["int8_compute"], name
            assert meta["int8_compute"]["mean_abs_diff"] <= MEAN_DIFF_TOLERANCE, name
        diff = checksum_difference(record["checksum"], checksum(module))
        assert diff <= record["checksum"]["tolerance"], f"{name}: the .onnx moved by {diff:.4f}"
        bound = OnnxMemoryBound(onnx.load_model_from_string(path.read_bytes()), path)  # skipped when verified:
        for shape in ((1, 3, 16, 16), (1, 3, 1024, 1024)):  # so it must hold here
            assert bound.nbytes(shape) < bound.allowance(shape) / 2, (name, shape)
