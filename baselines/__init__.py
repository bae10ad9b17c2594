"""The baselines, each registering itself with :mod:`mimea.models.registry` on import.

Importing this package imports every baseline module that exists; a module that is missing (not
written yet) or fails to import for lack of an optional dependency is skipped, so one broken
baseline never hides the others.
"""
from importlib import import_module

BASELINE_MODULES = ("gcn_align", "eva", "mclea", "meaformer", "msnea")

#: module name -> the ImportError that kept it out (for `mimea` diagnostics).
unavailable: dict[str, str] = {}

for _name in BASELINE_MODULES:
    try:
        import_module(f"{__name__}.{_name}")
    except ImportError as _err:  # missing module or optional dependency
        unavailable[_name] = str(_err)
