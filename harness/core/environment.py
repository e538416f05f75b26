"""What a run ran on: the versions of torch, of every runtime and of the harness, and the machine.

Recorded in every report and in the baseline (as pytest-benchmark's ``machine_info`` is in its
files), so that a status that changed can be read against what changed under it. The export
cache keys on :func:`library_versions` (what shapes an export); the records add the harness's
own version and the machine.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

__all__ = ["RUNTIME_DISTRIBUTIONS", "environment", "environment_changes", "library_versions", "machine"]

#: The distributions whose versions shape an export or a run: torch, the exporters and runtimes.
RUNTIME_DISTRIBUTIONS = ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "openvino", "numpy")
HARNESS_DISTRIBUTION = "export-conformance"
ABSENT = "absent"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ABSENT


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Python's version and those of ``RUNTIME_DISTRIBUTIONS`` and ``extra`` ("absent" where not
    installed)."""
    versions = {"python": sys.version.split()[0]}
    versions.update({dist: _version(dist) for dist in (*RUNTIME_DISTRIBUTIONS, *extra)})
    return versions


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@cache
def machine() -> dict[str, str]:
    """The machine: CPU model, core count, system and architecture."""
    return {
        "cpu": _cpu_name(),
        "cores": str(os.cpu_count() or "unknown"),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def environment(extra: Iterable[str] = ()) -> dict[str, dict[str, str]]:
    """``{"versions": ..., "machine": ...}``: the libraries (the harness's own version among
    them) and the machine, as reports and the baseline record them."""
    versions = library_versions(extra)
    versions[HARNESS_DISTRIBUTION] = _version(HARNESS_DISTRIBUTION)
    return {"versions": versions, "machine": machine()}


def environment_changes(
    before: Mapping[str, Mapping[str, str]], after: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """One ``name: old -> new`` per library version or machine fact that differs ("absent" for a
    name one side lacks); a section one side does not record at all is not compared."""
    changes = []
    for section in ("versions", "machine"):
        old, new = before.get(section, {}), after.get(section, {})
        if not old or not new:  # a record that predates this section: nothing to compare
            continue
        for name in sorted(set(old) | set(new)):
            if old.get(name, ABSENT) != new.get(name, ABSENT):
                changes.append(f"{name}: {old.get(name, ABSENT)} -> {new.get(name, ABSENT)}")
    return changes
