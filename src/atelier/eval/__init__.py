"""Quality metrics for stylization and translation results, and ``atelier eval`` (:func:`evaluate`)."""

from .domain import DomainJudge
from .metrics import gram_distance, identify_style, ssim, style_distance, style_statistics
from .report import EvalReport, EvaluationInterrupted, evaluate, pareto_front
from .variants import VARIANTS, MethodSpec, parse_method

__all__ = ["VARIANTS", "DomainJudge", "EvalReport", "EvaluationInterrupted", "MethodSpec", "evaluate",
           "gram_distance", "identify_style", "pareto_front", "parse_method", "ssim", "style_distance",
           "style_statistics"]
