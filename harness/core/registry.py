"""The case registry: ``register`` a ``ModelCase`` once, look it up by name everywhere."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable
from pathlib import Path

from .case import ModelCase

__all__ = ["CaseError", "case", "cases", "load_case_modules", "register", "unregister"]

_CASES: dict[str, ModelCase] = {}


class CaseError(ValueError):
    """A case declaration or case module that cannot be used."""


def register(new_case: ModelCase) -> ModelCase:
    """Add a case to the registry and return it (``CASE = register(ModelCase(...))``)."""
    if not isinstance(new_case, ModelCase):
        raise CaseError(f"register() takes a ModelCase, got {type(new_case).__name__}")
    existing = _CASES.get(new_case.name)
    if existing is not None and existing is not new_case:
        raise CaseError(f"a case named {new_case.name!r} is already registered")
    _CASES[new_case.name] = new_case
    return new_case


def unregister(name: str) -> None:
    """Remove a case (self-tests register throwaway cases)."""
    _CASES.pop(name, None)


def cases() -> list[ModelCase]:
    """All registered cases, sorted by name."""
    return [_CASES[name] for name in sorted(_CASES)]


def case(name: str) -> ModelCase:
    """The registered case called ``name``."""
    try:
        return _CASES[name]
    except KeyError:
        known = ", ".join(sorted(_CASES)) or "none"
        raise CaseError(f"no case named {name!r} (registered: {known})") from None


def load_case_modules(modules: Iterable[str], fixtures_dir: Path | None = None) -> None:
    """Import case modules so that their ``register`` calls run.

    Args:
        modules: dotted module names (the ``conformance_case_modules`` ini option).
        fixtures_dir: a ``fixtures/`` package whose modules are all imported.
    """
    names = list(modules)
    if fixtures_dir is not None and (fixtures_dir / "__init__.py").is_file():
        package = fixtures_dir.name
        names.extend(
            f"{package}.{info.name}"
            for info in pkgutil.iter_modules([str(fixtures_dir)])
            if not info.name.startswith("_")
        )
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise CaseError(f"cannot import case module {name!r}: {exc}") from exc
        except CaseError as exc:  # a declaration register() or ModelCase refused
            raise CaseError(f"case module {name!r}: {exc}") from exc
        except Exception as exc:  # the module's own bug: name it and where it raised, never a traceback
            raise CaseError(f"case module {name!r} raised at import: {_where(exc)}") from exc


def _where(exc: BaseException) -> str:
    """``TypeError: message (file.py:12)``: the exception and the last frame of the module's own."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "importlib" not in f.filename]
    frame = ours[-1] if ours else (frames[-1] if frames else None)
    first = str(exc).splitlines()[0] if str(exc) else ""
    at = f" ({frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {first}{at}"
