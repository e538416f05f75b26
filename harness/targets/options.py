"""A runtime's command-line knobs, declared by the runtime and added to pytest by the plugin.

A target lists the options it takes in ``Target.runtime_options``; the pytest plugin adds every
built-in target's to the ``conformance`` option group (``harness.targets.builtin_runtime_options``,
read without importing torch or any runtime), and hands each target the values of its own in
``Target.configure``, keyed by ``dest``. This module imports nothing heavy: the entry point that
every pytest run loads reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RuntimeOption", "add_runtime_options", "runtime_option_values", "unique_options"]


@dataclass(frozen=True)
class RuntimeOption:
    """One command-line option of a runtime: its spellings (the first is the
    ``--conformance-...`` one; the rest are aliases), the name ``configure`` reads it by
    (``dest``), and what ``argparse`` needs. ``default=None`` means "not given": the runtime's
    own setting."""

    flags: tuple[str, ...]
    dest: str
    help: str
    default: Any = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        if not self.flags or not all(f.startswith("--") for f in self.flags):
            raise ValueError(f"runtime option {self.dest!r}: flags must be long options, got {self.flags!r}")

    def add_to(self, group: Any) -> None:
        """Add the option to a pytest option group (``parser.getgroup("conformance")``)."""
        kwargs: dict[str, Any] = {"dest": self.dest, "default": self.default, "help": self.help}
        if self.choices is not None:
            kwargs["choices"] = self.choices
        if self.type is not None:
            kwargs["type"] = self.type
        if self.metavar is not None:
            kwargs["metavar"] = self.metavar
        group.addoption(*self.flags, **kwargs)


def unique_options(options: Iterable[RuntimeOption]) -> list[RuntimeOption]:
    """Each option once, in first-seen order; two different declarations of one ``dest`` are an error."""
    seen: dict[str, RuntimeOption] = {}
    for option in options:
        known = seen.setdefault(option.dest, option)
        if known != option:
            raise ValueError(
                f"runtime option {option.dest!r} is declared twice, differently: {known} and {option}"
            )
    return list(seen.values())


def add_runtime_options(parser: Any, options: Iterable[RuntimeOption]) -> None:
    """Add runtime options to the ``conformance`` group: what a conftest's ``pytest_addoption``
    calls for the options of a target of its own (the built-in targets' are added by the plugin)."""
    group = parser.getgroup("conformance", "export conformance")
    for option in unique_options(options):
        option.add_to(group)


def runtime_option_values(
    options: Iterable[RuntimeOption], getoption: Callable[..., Any]
) -> Mapping[str, Any]:
    """The values of ``options`` in this run, by ``dest`` (an option no parser added: its default)."""
    return {o.dest: getoption(o.dest, default=o.default) for o in options}
