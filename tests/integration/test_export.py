"""fastmmd export: parity of TorchScript / torch.export / ONNX files with the eager network, metadata,
size, half and int8 weights, refusal on mismatch, one-line CLI errors, no paths of the machine in the
file. The files are the session's export matrix (conftest.Exports); loading them without fastmmd:
tests/e2e/test_processes.py; the padding rule and the int8 storage's checks: tests/unit/test_export.py."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.infer.export import export_checkpoint, load_exported, quiet_jit
from fastmmd.model.files import network_from_checkpoint, read_metadata
from fastmmd.model.runtime import ExportedStylizer

ODD_SIZES = [(2, 3, 13, 21), (1, 3, 8, 9)]


@pytest.fixture(scope="module")
def eager(tiny_exports):
    net, _ = network_from_checkpoint(tiny_exports["ckpt"])
    return net


@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "onnx"])
def test_exported_matches_eager_fp32(tiny_exports, eager, fmt):
    if fmt not in tiny_exports:
        pytest.skip("onnx/onnxscript not installed")
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    module, meta = load_exported(tiny_exports[fmt])
    assert meta["format"] == fmt
    g = torch.Generator().manual_seed(1)
    for shape in ODD_SIZES:
        x = torch.rand(*shape, generator=g)
        with torch.inference_mode():
            y, ref = module(x), eager(x)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert (y - ref).abs().max().item() <= 1e-5, (fmt, shape)


def test_torchscript_uint8_in_uint8_out_any_size(tiny_exports, eager):
    module, _ = load_exported(tiny_exports["torchscript"])
    g = torch.Generator().manual_seed(2)
    for shape in [(2, 3, 13, 21), (1, 3, 5, 3)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        y = module(x)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        with torch.inference_mode():
            ref = eager(x.float() / 255).mul(255).round()
        assert (y.float() - ref).abs().max().item() <= 1.0
    x64 = torch.rand(1, 3, 11, 9, dtype=torch.float64)
    assert module(x64).dtype == torch.float64


def test_info_prints_metadata(tiny_exports, capsys):
    assert main(["export", "--info", str(tiny_exports["torchscript"])]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["style_images"] == ["tiny_style.png"] and meta["loss"] == "gram"
    assert meta["style_weight"] == 5.0 and meta["training_steps"] == 3
    assert 0 <= meta["parity_max_abs_diff"] <= 1e-5  # the check's result travels in the file
    assert meta["fastmmd_version"] and "uint8" in meta["input"] and meta["network"] == {"width": 8, "residual_blocks": 1, "downsample_kernel": 4}
    assert read_metadata(tiny_exports["pt2"])["format"] == "pt2"


def test_file_size_is_the_network(tiny_exports, eager):
    params = sum(p.numel() for p in eager.parameters())
    for fmt in ("torchscript", "pt2"):
        size = tiny_exports[fmt].stat().st_size
        # weights (4 bytes each) plus code (the .pt2's graph JSON is ~260 kB since the folded
        # upsampling); a VGG-19 stand-in alone would add > 1 MB
        assert 4 * params <= size <= 4 * params + 400_000, (fmt, size, params)


def test_half_export_is_smaller_and_close(export_matrix, tiny_exports, eager):
    half = export_matrix("single", "float16")
    assert half.meta("torchscript")["dtype"] == "float16"
    assert half["torchscript"].stat().st_size < tiny_exports["torchscript"].stat().st_size
    module, _ = load_exported(half["torchscript"])
    x = torch.rand(1, 3, 13, 21)
    y = module(x)  # fp32 in -> cast to fp16 inside -> fp32 out
    assert y.dtype == torch.float32 and (y - eager(x)).abs().max().item() < 2e-2


@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "onnx"])
def test_int8_export_is_a_quarter_of_float32_and_what_fastmmd_reads_is_what_it_runs(export_matrix, tiny_exports, eager, fmt):
    """--weights int8: 8-bit convolution weights with per-channel scales; the file's own program and
    fastmmd's reader (weights only) compute the same, close to the float network."""
    from fastmmd.model.files import read_network
    from fastmmd.model.storage import store

    if fmt not in tiny_exports:
        pytest.skip("onnx extra not installed")
    int8 = export_matrix("single", "int8")
    out, meta = int8[fmt], int8.meta(fmt)
    assert meta["dtype"] == "int8" and meta["parity_max_abs_diff"] <= 1e-5 and 0 < meta["storage_max_abs_diff"] < 0.05
    params = sum(p.numel() for p in eager.parameters())
    # at least a byte per parameter saved (the real network's files: checkpoints/README.md)
    assert meta["parameters"] == params and out.stat().st_size < tiny_exports[fmt].stat().st_size - params
    module, _ = load_exported(out)
    x = torch.rand(2, 3, 13, 21)
    with torch.no_grad():
        y = module(x)
        quantized = store(eager, "int8")(x)
        assert torch.allclose(y, quantized, atol=1e-5) and (y - eager(x)).abs().mean() < 5e-3
        if fmt != "onnx":
            net, read_meta = read_network(out)
            assert read_meta["dtype"] == "int8" and torch.allclose(net(x), quantized, atol=1e-5)
            convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
            assert all(len(torch.unique((c.weight / c.weight.abs().amax((1, 2, 3), keepdim=True)).mul(127).round())) <= 255
                       for c in convs)  # at most 255 levels per channel: what int8 holds


def test_export_takes_an_exported_file_and_keeps_its_storage_and_training(export_matrix, tmp_path, capsys):
    """``fastmmd export FILE.pt2`` (TorchScript by default, written beside it) and ``FILE.pt``: the
    network an exported file holds (read weights-only), exported again; its storage by default (int8
    stays int8, the same weights) or the one asked for, and the training description it carries."""
    import shutil

    from fastmmd.model.files import read_network

    int8 = export_matrix("single", "int8")
    source = Path(shutil.copy(int8["pt2"], tmp_path / "again.pt2"))
    assert main(["export", str(source)]) == 0  # default output: beside it
    assert "(torchscript, int8," in capsys.readouterr().out
    meta = read_metadata(tmp_path / "again.pt")
    assert meta["format"] == "torchscript" and meta["dtype"] == "int8"
    assert meta["source_checkpoint"] == int8.meta("pt2")["source_checkpoint"]  # the checkpoint it came from
    assert meta["storage_max_abs_diff"] <= 1e-6  # q s quantized again gives q s
    assert meta["training"] == int8.meta("pt2")["training"] and meta["loss"] == int8.meta("pt2")["loss"]
    before, after = read_network(source)[0].state_dict(), read_network(tmp_path / "again.pt")[0].state_dict()
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k], rtol=0, atol=1e-7) for k in before)
    assert main(["export", str(tmp_path / "again.pt"), "--weights", "float32", "-o", str(tmp_path / "float.pt")]) == 0
    meta = read_metadata(tmp_path / "float.pt")
    assert meta["dtype"] == "float32" and meta["training"] == int8.meta("pt2")["training"]


def test_int8_compute_onnx_runs_int8_convolutions_and_states_its_parity(export_matrix, make_image, tmp_path, capsys,
                                                                         monkeypatch):
    """``--calibrate PHOTOS``: the middle convolutions in int8 (QDQ pairs that onnxruntime fuses into
    QLinearConv, 7-bit weights), the first and the last in float32 from int8-stored weights; the
    metadata states how far the calibration crops moved, and fastmmd's ONNX checks take the file.
    A calibration that moves the output too far writes nothing.

    The float graph that is calibrated is the export matrix's int8 ``.onnx`` of the same network: the
    exporter's trace of it, byte for byte (checked once by tracing both; tracing it again here would
    repeat 4-6 s of torch.onnx for nothing this test checks). ``fastmmd export --calibrate`` with
    its own trace runs in tests/e2e/test_docs_run.py (docs/inference.md's ``--calibrate photos/``)."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from collections import Counter

    from fastmmd.infer import export, quantize
    from fastmmd.infer.quantize import MEAN_DIFF_TOLERANCE
    from fastmmd.model.files import ONNX_OPERATORS, open_onnx, read_network

    int8 = export_matrix("single", "int8")
    source, graph = int8["torchscript"], onnx.load(str(int8["onnx"]))
    del graph.metadata_props[:]  # what the exporter returned: the metadata is the file's
    traced = []

    def trace(module):
        traced.append(module.net.config())
        return onnx.ModelProto.FromString(graph.SerializeToString())

    monkeypatch.setitem(export._BUILDERS, "onnx", (trace, export._BUILDERS["onnx"][1]))
    photos = [str(make_image(f"cal/{i}.png", 48, 40, seed=i)) for i in range(3)]
    out = tmp_path / "int8.onnx"
    assert main(["export", str(source), "-o", str(out), "--calibrate", str(tmp_path / "cal")]) == 0
    assert ", int8 compute," in capsys.readouterr().out
    meta = read_metadata(out)
    record = meta["int8_compute"]
    assert meta["compute"] == "int8" and meta["dtype"] == "int8" and record["weight_bits"] == 7
    assert record["convs_float32"] == 2 and record["convs_int8"] > 0 and record["calibration"]["photos"] == len(photos)
    assert 0 < record["mean_abs_diff"] <= MEAN_DIFF_TOLERANCE and meta["parity_max_abs_diff"] == record["max_abs_diff"]
    model = onnx.load(str(out))
    assert {n.op_type for n in model.graph.node} <= ONNX_OPERATORS
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and all(abs(int(w.min())) <= 127 and int(w.max()) <= 127 for w in weights)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    fused = Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert fused["QLinearConv"] == record["convs_int8"], fused  # what makes it fast
    run, _ = open_onnx(out)  # fastmmd's ONNX checks and memory bound, then onnxruntime
    x = torch.rand(1, 3, 37, 45)
    with torch.inference_mode():
        assert run(x).shape == x.shape
    assert traced == [read_network(source)[0].config()]  # the network of the file given, as int8 stores it
    monkeypatch.setattr(quantize, "MEAN_DIFF_TOLERANCE", 0.0)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UserError, match="moves the calibration photos by .* nothing written"):
        export_checkpoint(source, tmp_path / "far.onnx", calibration=photos)
    assert sorted(tmp_path.rglob("*")) == before


def test_int8_compute_is_refused_where_it_does_not_apply(export_matrix, make_image, tmp_path):
    """Only ONNX files of single-style networks (a calibration that moves the output too far:
    test_int8_compute_onnx_runs_int8_convolutions_and_states_its_parity)."""
    pytest.importorskip("onnxruntime")
    photo = [make_image("p.png", 48, 40)]
    int8 = export_matrix("single", "int8")
    with pytest.raises(UserError, match="ONNX files .* not pt2"):
        export_checkpoint(int8["torchscript"], tmp_path / "x.pt2", calibration=photo)
    with pytest.raises(UserError, match="not a conditioned network"):
        export_checkpoint(export_matrix("conditioned")["ckpt"], tmp_path / "x.onnx", calibration=photo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_refuses_to_write_on_mismatch(tiny_exports, tmp_path, monkeypatch):
    import fastmmd.infer.export as export

    monkeypatch.setattr(export, "max_abs_diff", lambda *a: 0.5)
    out = tmp_path / "bad.pt"
    with pytest.raises(UserError, match="differs"):
        export_checkpoint(tiny_exports["ckpt"], out)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


def test_jit_warnings_do_not_leak(tiny_exports):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        load_exported(tiny_exports["torchscript"])


def test_wrapper_scripts_and_keeps_size(eager):
    """TorchScript compiles the wrapper (the network's padding rule included); the scripted module
    keeps odd sizes, also below the 8 px minimum (replicate padding), and equals eager execution."""
    with quiet_jit():
        scripted = torch.jit.script(ExportedStylizer(eager).eval())
    g = torch.Generator().manual_seed(2)
    for shape in [(2, 3, 9, 14), (1, 3, 5, 7), (1, 3, 37, 45)]:
        x = torch.rand(*shape, generator=g)
        with torch.inference_mode():
            y, ref = scripted(x), eager(x)
        assert y.shape == x.shape and torch.isfinite(y).all(), shape
        assert (y - ref).abs().max().item() <= 1e-6, shape
    x = torch.rand(2, 3, 9, 14, generator=g)  # the branch-free variant for torch.export/ONNX: same numbers
    with torch.inference_mode():
        assert (ExportedStylizer(eager, traceable=True)(x) - eager(x)).abs().max().item() <= 1e-6


@pytest.mark.parametrize("argv, needle", [
    (["export", "missing.ckpt", "-o", "x.pt"], "does not exist"),
    (["export", "{png}", "-o", "x.pt"], "not a fastmmd checkpoint or model"),
    (["export", "{ckpt}", "-o", "x.xyz"], "suffix"),
    (["export"], "give a checkpoint"),
    (["export", "--info", "{png}"], "suffix"),
])
def test_cli_errors_are_one_line(tiny_exports, tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG not really")
    argv = [a.format(png=png, ckpt=tiny_exports["ckpt"]) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not Path(tmp_path / "x.pt").exists()


def test_exported_files_name_no_paths_of_the_machine_that_wrote_them(tiny_exports):
    import fastmmd

    here = [str(Path(torch.__file__).resolve().parents[1]), str(Path(fastmmd.__file__).resolve().parent),
            str(tiny_exports["ckpt"].parent), *(str(tiny_exports[fmt].parent) for fmt in tiny_exports if fmt != "ckpt")]
    for fmt in ("torchscript", "pt2", "onnx"):
        if fmt not in tiny_exports:
            continue
        data = tiny_exports[fmt].read_bytes()
        assert not any(p.encode() in data for p in here), fmt  # stack traces, temp-file names
        if zipfile.is_zipfile(tiny_exports[fmt]):  # and inside compressed members (TorchScript's debug records)
            with zipfile.ZipFile(tiny_exports[fmt]) as z:
                for name in z.namelist():
                    member = z.read(name)
                    assert not any(p.encode() in member for p in here), (fmt, name)
        if fmt == "torchscript":  # the archive's top folder is the neutral "archive", not the temp file's name
            with zipfile.ZipFile(tiny_exports[fmt]) as z:
                assert {n.split("/")[0] for n in z.namelist()} == {"archive"}
