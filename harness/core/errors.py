"""Who is at fault: the export (a ``fail`` cell) or the harness and its inputs (an ``error`` cell).

Every check ends in exactly one of these. A verdict that says the export does not conform raises
:class:`ConformanceFailure`; the target's runtime raising on inputs eager accepts is the export's
failure too (:class:`TargetRunError`). Anything that is the case's, the user's or the harness's
fault (eager itself rejecting the case's inputs, a declaration that cannot be honoured, a bug) is
a :class:`HarnessError` or any other exception: the matrix shows it as ``error``, never ``fail``,
and an expected failure never hides it.
"""

from __future__ import annotations

import re
import traceback

__all__ = [
    "ConformanceFailure",
    "HarnessError",
    "TargetRunError",
    "constraint_line",
    "describe_exception",
    "first_meaningful_line",
    "root_cause",
    "whole_message",
]


class ConformanceFailure(AssertionError):
    """A cell whose outputs do not conform; the message's first line is the diagnosis."""


class TargetRunError(ConformanceFailure):
    """The target's runtime raised on inputs that eager runs: the export does not compute them."""


class HarnessError(RuntimeError):
    """Not the export's fault: the case, its inputs, the user's options or the harness itself."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def root_cause(exc: BaseException) -> BaseException:
    """The innermost ``__cause__`` (the ONNX exporter wraps torch.export's error in its own)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(exception class, first meaningful line), naming the root cause where one is chained."""
    cause = root_cause(exc)
    if cause is exc:
        return type(exc).__name__, first_meaningful_line(exc)
    return f"{type(exc).__name__} <- {type(cause).__name__}", first_meaningful_line(cause)


def first_meaningful_line(exc: BaseException) -> str:
    """The first line of an exception message that says something (exporters print banners)."""
    skip_prefixes = (
        "traceback",
        "the above exception",
        "===",
        "---",
        "for more information",
        "from user code",
    )
    for line in _ANSI.sub("", str(exc)).splitlines():
        text = line.strip()
        if text and not text.lower().startswith(skip_prefixes):
            return text[:300]
    frames = traceback.extract_tb(exc.__traceback__)
    return f"raised at {frames[-1].filename}:{frames[-1].lineno}" if frames else "(no message)"


def whole_message(exc: BaseException, limit: int = 1000) -> str:
    """Every line of an exception's message on one line (a runtime's load error puts its cause
    after a location line such as OpenVINO's ``Exception from src/.../core.cpp:84:``)."""
    text = " ".join(line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip())
    if not text:
        return first_meaningful_line(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def constraint_line(exc: BaseException) -> str:
    """torch.export's constraint violations put the useful sentence in a ``- `` bullet."""
    for line in _ANSI.sub("", str(root_cause(exc))).splitlines():
        text = line.strip()
        if text.startswith("- "):
            return text[2:][:300]
    return describe_exception(exc)[1]
