"""Task metrics: errors that mean something to the person shipping the model."""

from __future__ import annotations

import numpy as np

from .case import Metric, Outputs

__all__ = ["pitch_error_cents"]


def pitch_error_cents(
    *, pitch: str = "pitch", confidence: str = "confidence", voiced_above: float = 0.5, threshold: float = 1.0
) -> Metric:
    """Return a Metric: the largest pitch error, in cents, over frames eager calls voiced.

    Frames count as voiced where eager's ``confidence`` output exceeds ``voiced_above``; a NaN
    pitch from the target on such a frame is an infinite error. No voiced frame: error 0.
    """

    def compute(expected: Outputs, actual: Outputs) -> float:
        voiced = np.asarray(expected[confidence]).reshape(-1) > voiced_above
        if not voiced.any():
            return 0.0
        e = np.asarray(expected[pitch], dtype=np.float64).reshape(-1)[voiced]
        a = np.asarray(actual[pitch], dtype=np.float64).reshape(-1)[voiced]
        error = np.abs(a - e) * 100.0
        return float(np.inf) if not np.all(np.isfinite(error)) else float(error.max())

    return Metric(name="pitch error on voiced frames", unit="cents", compute=compute, threshold=threshold)
