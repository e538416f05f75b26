"""Conformance suites, generated from the case registry (run them with ``pytest --pyargs harness.suites``)."""
