"""Quality metrics for stylization and translation results, and ``atelier eval`` (:func:`evaluate`).

The metrics (:mod:`~atelier.eval.metrics`, :mod:`~atelier.eval.domain`) sit below the methods,
which may use them in training; the quality gate (:mod:`~atelier.eval.report`) and the method
variants (:mod:`~atelier.eval.variants`) run methods and are imported on first use, so that a
method module importing a metric makes no import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .domain import DomainJudge
from .metrics import gram_distance, identify_style, ssim, style_distance, style_statistics

if TYPE_CHECKING:
    from .report import EvalReport, EvaluationInterrupted, evaluate, pareto_front
    from .variants import VARIANTS, MethodSpec, parse_method

__all__ = ["VARIANTS", "DomainJudge", "EvalReport", "EvaluationInterrupted", "MethodSpec", "evaluate",
           "gram_distance", "identify_style", "pareto_front", "parse_method", "ssim", "style_distance",
           "style_statistics"]

#: Names served from the modules that run methods, imported on first use.
_LAZY = {"EvalReport": "report", "EvaluationInterrupted": "report", "evaluate": "report",
         "pareto_front": "report", "VARIANTS": "variants", "MethodSpec": "variants", "parse_method": "variants"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
