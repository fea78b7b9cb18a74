"""Base distillation methods, one module each over :mod:`.base`.

Importing this package imports every module in it, which registers its method in
:data:`METHODS` (``mtt``, ``ftd``, ``datm``, ``dm``, ``tgdd``, ``dc``, and any other module dropped here).
"""
import importlib
import pkgutil

from ddtime.driver.distill.methods.base import METHODS, DistillContext, DistillMethod, MethodOutput, build_method, register_method

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "DistillContext", "DistillMethod", "MethodOutput", "build_method", "register_method"]
