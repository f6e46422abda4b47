"""Every shipped config parses through the real CLI and trains a step (one that only sets the loss
method on a base: that base and that loss do); bad configs are one line + exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastmmd.__main__ import main
from fastmmd.model.files import read_checkpoint
from fastmmd.train.cli import run_lightning

ROOT = Path(__file__).resolve().parents[2] / "configs"
#: Every training recipe as the --config files it is given with: a file of its own, or a base plus
#: one short override (configs/coco.yaml + configs/coco/<loss>.yaml, configs/gpu.yaml + configs/zoo/<style>.yaml).
RECIPES = ([(c,) for c in sorted(ROOT.glob("*.yaml")) if "model" in yaml.safe_load(c.read_text())]
           + [(ROOT / "coco.yaml", c) for c in sorted((ROOT / "coco").glob("*.yaml"))]
           + [(ROOT / "gpu.yaml", c) for c in sorted((ROOT / "zoo").glob("*.yaml"))]
           + [(ROOT / "arbitrary.yaml", c) for c in sorted((ROOT / "arbitrary").glob("*.yaml"))])


def _id(recipe: tuple[Path, ...]) -> str:
    return "+".join(str(c.relative_to(ROOT).with_suffix("")) for c in recipe)


def _merged(recipe: tuple[Path, ...]) -> dict:
    """The files' settings as LightningCLI merges them: later files override earlier ones, key by key."""
    def merge(into: dict, new: dict) -> dict:
        for key, value in new.items():
            into[key] = merge(dict(into.get(key) or {}), value) if isinstance(value, dict) else value
        return into
    merged: dict = {}
    for config in recipe:
        merge(merged, yaml.safe_load(config.read_text()))
    return merged


def _args(recipe: tuple[Path, ...]) -> list[str]:
    return [arg for c in recipe for arg in ("--config", str(c))]


def test_every_loss_has_a_config():
    assert {"gram", "linear", "poly", "gaussian", "bn", "bn_poly"} <= {c.stem for c in (ROOT / "coco").glob("*.yaml")}
    assert (ROOT / "quickstart.yaml").is_file()


def _assert_contains(printed: dict, written: dict, where: str) -> None:
    for key, value in written.items():
        if isinstance(value, dict):
            _assert_contains(printed[key], value, f"{where}.{key}")
        else:
            assert printed[key] == value, f"{where}.{key}"


@pytest.mark.parametrize("recipe", RECIPES, ids=_id)
def test_config_prints_resolved(recipe, capsys):
    assert run_lightning("fit", [*_args(recipe), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    written = _merged(recipe)
    for section in ("model", "data", "trainer"):
        _assert_contains(printed[section], written.get(section, {}), section)
    assert printed["trainer"]["use_distributed_sampler"] is False  # fastmmd's CLI default


def _loss_only(recipe: tuple[Path, ...]) -> str | None:
    """The loss method of a base plus an override that changes nothing but the run name and
    ``model.loss.method`` (configs/zoo/*.yaml on configs/gpu.yaml), else None."""
    if len(recipe) != 2:
        return None
    override = yaml.safe_load(recipe[1].read_text()) or {}
    model = override.get("model") or {}
    if set(override) <= {"run_name", "model"} and set(model) == {"loss"} and set(model["loss"]) == {"method"}:
        return model["loss"]["method"]
    return None


#: The recipes that train a step: all but those whose one step would repeat two others' (the base
#: recipe's settings with a loss method that another recipe trains; each is still parsed above).
TRAINED = [r for r in RECIPES if not (_loss_only(r) and (ROOT / r[0].name,) in RECIPES and _loss_only(r) in
                                      {_merged(o)["model"]["loss"]["method"] for o in RECIPES if not _loss_only(o)})]


def test_the_recipes_left_untrained_only_change_the_loss_to_one_trained():
    untrained = [r for r in RECIPES if r not in TRAINED]
    assert untrained and all(_loss_only(r) for r in untrained), untrained
    trained = {_merged(r)["model"]["loss"]["method"] for r in TRAINED}
    for recipe in untrained:
        merged, base = _merged(recipe), _merged(recipe[:1])
        assert (recipe[0],) in TRAINED and merged["model"]["loss"]["method"] in trained, _id(recipe)
        base["model"]["loss"]["method"] = merged["model"]["loss"]["method"]
        assert {**merged, "run_name": None} == {**base, "run_name": None}, _id(recipe)


@pytest.mark.parametrize("recipe", TRAINED, ids=_id)
def test_config_trains_one_step_on_tiny_data(recipe, fit_args, fit_data, tmp_path):
    # the recipe's own settings, with paths, sizes and the VGG swapped for the test stand-in
    # (every loss's training step: tests/unit/test_training.py)
    args = [*_args(recipe), *fit_args, "--trainer.max_steps", "1", "--trainer.precision", "32", "--model.network_width", "8",
            "--model.init_from", "null", "--trainer.max_time", "null", "--trainer.val_check_interval", "1",
            "--run_name", "one"]
    conditioning = _merged(recipe)["model"].get("conditioning") or []
    if "styles" in conditioning:  # several styles: two tiny ones
        style = fit_args[fit_args.index("--model.style_images") + 1].strip("[]")
        args += ["--model.style_images", f"[{style},{style}]"]
    if "arbitrary" in conditioning:  # any painting: a folder of tiny paintings instead of a style image
        i = args.index("--model.style_images")
        del args[i:i + 2]
        args += ["--data.painting_root", str(fit_data / "paintings"), "--data.painting_size", "32",
                 "--data.painting_val_size", "2", "--model.compile", "false"]
    assert run_lightning("fit", args) == 0
    ckpt = read_checkpoint(tmp_path / "runs" / "one" / "last.ckpt")
    written = _merged(recipe)["model"]["loss"]
    assert ckpt["global_step"] == 1 and ckpt["fastmmd"]["loss"] == written["method"]


#: Recipes that take their photos and painting from the command line (the rest use files inside the repository).
NO_DATA = [r for r in RECIPES if not (_merged(r)["model"].get("style_images") or _merged(r)["data"].get("root"))]


def test_recipes_name_no_data_of_their_own():
    assert {_id(r) for r in NO_DATA} >= {"cpu", "gpu", "multistyle", "strength", "video", "gpu+zoo/starry_night"}


@pytest.mark.parametrize("recipe", NO_DATA, ids=_id)
def test_recipe_without_data_says_which_flag_to_pass(recipe, make_image, tmp_path, capsys):
    """One line and exit 2 naming the flag: first the painting, then (given one) the photos."""
    painting = make_image("painting.png", 32, 32)
    styles = f"[{painting},{painting}]"  # multistyle wants two at least
    # the VGG stand-in: the real VGG-19 (the recipes' own) would load 0.5 GB of weights for each message
    runs = ["--runs_dir", str(tmp_path / "runs"), "--model.init_from", "null", "--model.vgg_weights", "random",
            "--model.vgg_width_divisor", "8"]
    steps = (([], "--model.style_images '["), (["--model.style_images", styles], "--data.root"))
    if "arbitrary" in (_merged(recipe)["model"].get("conditioning") or []):  # paintings come with the data
        steps = (([], "--data.painting_root DIR"), (["--data.painting_root", str(tmp_path)], "--data.root"))
    for extra, flag in steps:
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *_args(recipe), *runs, *extra])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and "\n" not in err and flag in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("bad, message", [
    (["--model.style_wieght", "5"], "unrecognized arguments: --model.style_wieght"),
    (["--model.loss.style_weight", "strong"], "model.loss.style_weight"),
    (["--config", "no/such/config.yaml"], "no/such/config.yaml"),
    (["--model.loss.method", "grma"], "did you mean 'gram'"),
    (["--data.root", "no/such/folder"], "no/such/folder"),
])
def test_bad_config_is_one_line_and_exit_2(bad, message, fit_args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *fit_args, *bad])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert err.startswith("fastmmd: error:") and message in err and "\n" not in err and "Traceback" not in err


def test_unknown_key_in_a_config_file(fit_args, tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  style_weigth: 5.0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), *fit_args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "style_weigth" in err and "\n" not in err


def test_missing_style_image_is_one_line(fit_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *fit_args, "--model.style_images", f"[{tmp_path / 'gone.jpg'}]", "--trainer.max_steps", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "gone.jpg" in err and "\n" not in err
