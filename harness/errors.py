"""Who is at fault: the export (a ``fail`` cell) or the harness and its inputs (an ``error`` cell).

Every check ends in exactly one of these. A verdict that says the export does not conform raises
:class:`ConformanceFailure`; the target's runtime raising on inputs eager accepts is the export's
failure too (:class:`TargetRunError`). Anything that is the case's, the user's or the harness's
fault (eager itself rejecting the case's inputs, a declaration that cannot be honoured, a bug) is
a :class:`HarnessError` or any other exception: the matrix shows it as ``error``, never ``fail``,
and an expected failure never hides it.
"""

from __future__ import annotations

__all__ = ["ConformanceFailure", "HarnessError", "TargetRunError"]


class ConformanceFailure(AssertionError):
    """A cell whose outputs do not conform; the message's first line is the diagnosis."""


class TargetRunError(ConformanceFailure):
    """The target's runtime raised on inputs that eager runs: the export does not compute them."""


class HarnessError(RuntimeError):
    """Not the export's fault: the case, its inputs, the user's options or the harness itself."""
