"""Package front doors that import on first use: ``tamdeploy.models.create_model`` without loading
torch until it is called for, ``tamdeploy.Predictor`` without loading the CLI's world."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, public: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``public`` maps a name to the module that defines it
    (relative to the package, or absolute when it starts with ``tamdeploy.``)."""

    def __getattr__(name: str) -> Any:
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = public[name]
        return getattr(import_module(module if module.startswith("tamdeploy.") else f"{package}.{module}"), name)

    return __getattr__
