"""Lazy package exports (PEP 562): `from fertrain.manifests import load_manifest` imports the
submodule that defines it on first use, so importing a package (as the CLI does to read
`--help`) does not load pandas, scikit-learn or torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """(`__getattr__`, `__dir__`) for `package`, whose public `name`s live in `exports[name]` (a
    submodule name relative to the package)."""
    namespace: dict[str, object] = {}

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if name not in namespace:
            namespace[name] = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
