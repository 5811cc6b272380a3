"""Style transfer methods, one module each, chosen by name from a registry.

Every module of this package is imported here (found by :mod:`pkgutil`, in name order), so a new
method file registers its method and training task without being listed anywhere, and none can
silently go missing. A method module holds one paper; the framework it builds on is
:mod:`atelier.pipelines`.
"""

import importlib
import pkgutil

from ..pipelines.base import Method, MethodConfig, StylizeResult, available_methods, get_method, register

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")  # registers the module's methods and training tasks

__all__ = ["Method", "MethodConfig", "StylizeResult", "available_methods", "get_method", "register"]
