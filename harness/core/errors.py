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
    "LoggedRuntimeError",
    "TargetRunError",
    "constraint_line",
    "describe_exception",
    "first_meaningful_line",
    "full_message",
    "root_cause",
    "salient_lines",
    "whole_message",
]


class ConformanceFailure(AssertionError):
    """A cell whose outputs do not conform; the message's first line is the diagnosis."""


class TargetRunError(ConformanceFailure):
    """The target's runtime raised on inputs that eager runs: the export does not compute them."""


class HarnessError(RuntimeError):
    """Not the export's fault: the case, its inputs, the user's options or the harness itself."""


class LoggedRuntimeError(RuntimeError):
    """A runtime's exception with what its native code logged to stderr meanwhile (ExecuTorch
    says only ``error 0x10``; the cause is in its C++ log). ``kind`` is the runtime's class."""

    def __init__(self, exc: BaseException, logged: list[str]) -> None:
        self.kind = type(exc).__name__
        self.logged = list(logged)
        text = str(exc) or self.kind
        super().__init__(text + ("\nthe runtime logged:\n" + "\n".join(self.logged) if self.logged else ""))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def root_cause(exc: BaseException) -> BaseException:
    """The innermost ``__cause__`` (the ONNX exporter wraps torch.export's error in its own)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(exception class, its cause in one line), naming the root cause where one is chained.

    The line is the message's first meaningful line, followed by its salient lines where it has
    any (``salient_lines``: a guard, the user's source line, an unsupported operator, what a
    runtime logged), joined by `` | ``; an ordinary one-line message stays as it is."""
    cause = root_cause(exc)
    kind = _kind(cause) if cause is exc else f"{_kind(exc)} <- {_kind(cause)}"
    return kind, cause_line(cause)


#: How long the one-line cause may grow with its salient lines (the matrix keeps 400 characters
#: of a reason, the target, case and exception class come first).
CAUSE_LINE_LIMIT = 330
_SALIENT_LINE_LIMIT = 220


def cause_line(exc: BaseException) -> str:
    """An exception's first meaningful line and its salient lines, in one line."""
    head = _without_boilerplate(first_meaningful_line(exc))
    parts = [head]
    for line in salient_lines(str(exc)):
        if line not in head and all(line not in part for part in parts):
            parts.append(_first_sentence(line))
    text = parts[0]
    for part in parts[1:]:
        if len(text) + 3 + len(part) > CAUSE_LINE_LIMIT:
            break
        text += " | " + part
    return text


def _first_sentence(line: str) -> str:
    """A long salient line cut to its first sentence (torch's advice follows it), then to a limit."""
    if len(line) > 120:
        end = line.find(". ", 40)
        if end > 0:
            line = line[: end + 1]
    return line if len(line) <= _SALIENT_LINE_LIMIT else line[: _SALIENT_LINE_LIMIT - 3] + "..."


_BOILERPLATE = re.compile(r"\s*(For more information, run with TORCH_LOGS=\S+|For more information.*)$")


def _without_boilerplate(line: str) -> str:
    """torch's headline without its "run with TORCH_LOGS" advice."""
    return _BOILERPLATE.sub("", line).strip() or line


#: A guard or a refused dynamic range as torch.export states it.
_GUARD = re.compile(
    r"satisfy the generated guard|specialized it to be a constant|could not guard on data-dependent"
    r"|guard on data-dependent|not all values of|must be (?:static|constant)|constraints violated",
    re.IGNORECASE,
)
#: An operator an exporter or converter cannot take.
_UNSUPPORTED = re.compile(
    r"conversion (?:is )?failed for|no conversion rule|unsupported (?:op|operator|fx node|onnx)"
    r"|(?:op|operator)s? .*not (?:supported|implemented)|missing (?:op|operator|kernel)"
    r"|failed to convert|not supported by",
    re.IGNORECASE,
)
#: A frame in a traceback or a graph's code comment: ``File "x.py", line 3`` / ``# File: x.py:3 in f``
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<fn>\S+))?')
_GRAPH_FRAME = re.compile(r"# File: (?P<file>\S+?):(?P<line>\d+) in (?P<fn>\S+), code: (?P<code>.*)")
#: A line a C++ runtime logged: ``[tensor_impl.cpp:135] ...`` or ``E 00:00:00.1 executorch:x.cpp:12] ...``
_RUNTIME_LOG = re.compile(r"^(?:[EWF]\s.*)?\[?[\w./-]+\.(?:cpp|cc|h|hpp):\d+\]")
_LIBRARY_PATHS = ("site-packages", "dist-packages", "/torch/", "<frozen", "/lib/python", "<string>")


def salient_lines(text: str, limit: int = 6) -> list[str]:
    """The lines of an exporter's or runtime's message that carry its cause, in order: guards
    (torch.export's ``- Not all values of h ... satisfy the generated guard ...``), the user's
    source line where the error arose (``File "model.py", line 12: x = ...``), unsupported
    operators (OpenVINO's ``Conversion is failed for: STFT-20``) and what a C++ runtime logged
    (``[tensor_impl.cpp:135] Attempted to resize a static tensor ...``). Empty for an ordinary
    message that has none of these."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines()]
    guards: list[str] = []
    ops: list[str] = []
    logged: list[str] = []

    def keep(into: list[str], line: str) -> None:
        line = line.removeprefix("- ").removeprefix("-- ").strip()
        if line and line not in into:
            into.append(line)

    for index, line in enumerate(lines):
        if not line or line.lower().startswith("suggested fixes"):
            continue
        if _UNSUPPORTED.search(line):
            keep(ops, line)
        elif _GUARD.search(line) and index > 0:
            keep(guards, line)
        elif _RUNTIME_LOG.search(line):
            keep(logged, line)
    summary = [line for line in ops if _OP_SUMMARY.search(line)]
    if summary:  # OpenVINO's summary names every operator its per-operator lines name
        ops = summary + [line for line in ops if not _OP_DETAIL.search(line) and line not in summary]
    user_frame = _user_frame(lines)
    # a long list of guards: the first two say what is refused
    shown = ops + guards[:2] + ([f"({len(guards) - 2} more guards)"] if len(guards) > 2 else [])
    shown += [user_frame] if user_frame else []
    return (shown + logged)[:limit]


_OP_SUMMARY = re.compile(r"conversion is failed for:", re.IGNORECASE)
_OP_DETAIL = re.compile(r"conversion failed for \S+$", re.IGNORECASE)


def _user_frame(lines: list[str]) -> str | None:
    """The last frame in the user's own code that a message quotes, with its source line (a
    traceback's frame, where the error was raised, before a graph's code comment)."""
    raised: str | None = None
    commented: str | None = None
    for index, line in enumerate(lines):
        graph = _GRAPH_FRAME.search(line)
        match = graph or _FRAME.search(line)
        if match is None or any(part in match["file"] for part in _LIBRARY_PATHS):
            continue
        code = graph["code"] if graph else next(iter(lines[index + 1 : index + 2]), "")
        where = f'File "{match["file"]}", line {match["line"]}'
        if match["fn"]:
            where += f", in {match['fn']}"
        text = f"{where}: {code.strip()}" if code and not _FRAME.search(code) else where
        if graph:
            commented = commented or text
        else:
            raised = text
    return raised or commented


def _kind(exc: BaseException) -> str:
    """The exception's class name, or the runtime's own where a wrapper says it (``kind``)."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) and kind else type(exc).__name__


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


def full_message(exc: BaseException, limit: int = 20_000) -> str:
    """The whole text of an exception and of every exception it was raised from, innermost
    last, lines kept (what the JSON report keeps beside the one-line reason)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{_kind(current)}: {_ANSI.sub('', str(current)).strip()}")
        current = current.__cause__
    text = "\n".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
