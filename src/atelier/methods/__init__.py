"""Style transfer methods, one module each, chosen by name from a registry.

Every method module is imported here explicitly so none can silently go missing.
"""

from ..pipelines.base import Method, MethodConfig, StylizeResult, available_methods, get_method, register
from . import adain, avatar, cyclegan, gatys, johnson, lst, photo, sanet, style_swap, ugatit, wct  # noqa: F401  (registers the methods and their training tasks)

__all__ = ["Method", "MethodConfig", "StylizeResult", "available_methods", "get_method", "register"]
