"""The checks: equivalence, the input space, streaming (and its diagnoses), golden snapshots,
the weight audit, branch discovery and failure localisation."""
