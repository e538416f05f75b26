"""The project a command runs in: its pytest configuration, found as pytest finds it, and the
case modules it names (``conformance_case_modules``), imported as pytest would import them."""

from __future__ import annotations

import configparser
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..core import registry

__all__ = ["as_list", "load_cases", "project_config"]


def project_config(start: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The pytest configuration of the project around ``start`` (default: the current folder),
    found the way pytest finds its inifile: walking up, the first of pytest.ini, .pytest.ini,
    pyproject.toml with [tool.pytest.ini_options], tox.ini with [pytest], setup.cfg with
    [tool:pytest]. Returns (the file, its options)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("pytest.ini", ".pytest.ini"):
            path = folder / name
            if path.is_file():
                return path, _ini_section(path, "pytest") or {}
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                body = tomllib.loads(pyproject.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                body = {}
            options = body.get("tool", {}).get("pytest", {}).get("ini_options")
            if options is not None:
                return pyproject, dict(options)
        for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            path = folder / name
            if path.is_file():
                options = _ini_section(path, section)
                if options is not None:
                    return path, options
    return None, {}


def _ini_section(path: Path, section: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error:
        return None
    return dict(parser[section]) if parser.has_section(section) else None


def as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    return [str(v) for v in value or []]


def load_cases() -> None:
    """Import the case modules the current project's pytest configuration names
    (``conformance_case_modules``), with the project's folder and ``pythonpath`` on sys.path.
    Raises ``CaseError`` naming the configuration file when a module cannot be loaded."""
    path, options = project_config()
    if path is not None:
        root = path.parent
        for entry in [".", *as_list(options.get("pythonpath", []))]:
            folder = str((root / entry).resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    modules = as_list(options.get("conformance_case_modules", []))
    try:
        registry.load_case_modules(modules)
    except registry.CaseError as exc:
        raise registry.CaseError(f"{exc} (named by conformance_case_modules in {path})") from None
    if not registry.cases():
        where = f"in {path}" if path else "(no pytest configuration found from here up)"
        print(
            f"note: no conformance cases: conformance_case_modules {where} names no module that registers one",
            file=sys.stderr,
        )
