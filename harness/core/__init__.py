"""The model of the domain: cases and their registry, comparisons, the judge and its verdict,
errors, shapes, call sequences, buffers and the state audit."""
