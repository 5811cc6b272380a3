"""Style transfer methods, one module each, chosen by name from a registry.

Every method module is imported here explicitly so none can silently go missing.
"""

from . import adain, gatys, johnson, photo, wct  # noqa: F401  (registers the methods and their training tasks)
from .base import Method, MethodConfig, StylizeResult, available_methods, get_method, register

__all__ = ["Method", "MethodConfig", "StylizeResult", "available_methods", "get_method", "register"]
