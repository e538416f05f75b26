"""Each runtime's file run with nothing but the runtime: the programs a reproducer ships.

A reproducer (``export-conformance repro``) must run where the harness is not installed, on the
maintainers' machine: ``repro.py`` is this package's ``driver`` joined with one runtime module,
as text. Each runtime module imports numpy and its runtime only and defines
``open_program(path, config)``, whose result either runs positional inputs (``run(list) -> list``,
the torch runtimes and ExecuTorch, whose files hold their state) or named graph values
(``run_named(dict) -> dict`` with ``input_names`` and ``output_names``: onnxruntime and LiteRT,
where the driver feeds a lifted state back). tests/test_repro.py checks that each runs a file as
the target's own runner does.
"""

#: target -> its standalone runtime module, for targets that have none of their own name
RUNTIME_MODULES = (
    "onnxruntime_program",
    "torch_program",
    "executorch_program",
    "openvino_program",
    "litert_program",
)
