"""The study's shared names: which kinds it trains, which variants it evaluates, the grid's levels,
and the small helpers that run.py, precision.py, claims.py and report.py all use.

Nothing here imports another study module, so the study's modules import this one and never each
other in a circle.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from fusionrt.bundle import DEFAULT, PRECISIONS
from fusionrt.config import Config, FusionKind
from fusionrt.errors import ConfigError
from fusionrt.frame import MODALITIES

FUSION_KINDS = tuple(kind.value for kind in FusionKind)
SINGLE_HEAD = FusionKind.EARLY  # the head a single-modality model gets: an MLP over its one embedding
NOISE_LEVELS = (0.0, 1.0, 2.0, 3.0)
NONE = "none"  # the robustness grid's "nothing missing" column
# The bundle variants the precision study evaluates: every component FP32, FP16, INT8, then "default":
# each component's default variant after `quantize --mode int8-static` (INT8 where it met the
# accuracy budget and was at least 1.1x faster, else FP32), the mix a deployment would run.
STUDY_VARIANTS = (*PRECISIONS, DEFAULT)
CALIBRATION_ITEMS = 128
FUSION_MARGIN_PTS = 5.0
INT8_BUDGET_PTS = 0.5


def study_kinds(config: Config) -> tuple[str, ...]:
    """Every kind the study trains for `config`: one per configured modality, then each fusion head."""
    return (*config.model.modalities, *FUSION_KINDS)


def kind_label(kind: str) -> str:
    return f"{kind}-only" if kind in MODALITIES else f"{kind.replace('_', '-')} fusion"


def parse_seeds(spec: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); ConfigError naming what was wrong."""
    parts = [p.strip() for p in spec.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(
            f"--seeds {spec!r}: expected distinct comma-separated non-negative integers, such as 0,1,2"
        )
    return tuple(int(p) for p in parts)


def parse_kinds(spec: str, config: Config) -> tuple[str, ...]:
    """'text,early' -> ('text', 'early'), checked against the kinds `config` allows."""
    allowed = study_kinds(config)
    kinds = tuple(k.strip() for k in spec.split(","))
    unknown = [k for k in kinds if k not in allowed]
    if unknown or len(set(kinds)) != len(kinds):
        what = f"unknown kind {unknown[0]!r}" if unknown else "a kind is repeated"
        raise ConfigError(f"--kinds {spec!r}: {what}; expected distinct names from {', '.join(allowed)}")
    return kinds


def kind_config(config: Config, kind: str, seed: int) -> Config:
    """`config` with the modalities and fusion head of `kind`, trained with seed `seed`."""
    model = config.model
    if kind in FUSION_KINDS:
        model = dataclasses.replace(model, fusion=dataclasses.replace(model.fusion, kind=FusionKind(kind)))
    else:
        model = dataclasses.replace(
            model, modalities=(kind,), fusion=dataclasses.replace(model.fusion, kind=SINGLE_HEAD)
        )
    return dataclasses.replace(config, model=model, train=dataclasses.replace(config.train, seed=seed))


def aggregate(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (n - 1) over seeds; std is None for a single value."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    return {"mean": float(array.mean()), "std": std, "n": len(array), "values": [float(v) for v in array]}


def level_key(level: float) -> str:
    return f"{level:g}"
