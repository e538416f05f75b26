"""Repository conftest. The harness itself is a pytest plugin (entry point ``export_conformance``,
installed with ``pip install -e .``); cases are found in ``fixtures/``."""

pytest_plugins = ["pytester"]
