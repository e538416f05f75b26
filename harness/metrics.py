"""Task metrics: errors that mean something to the person shipping the model."""

from __future__ import annotations

import numpy as np

from .case import Metric, Outputs

__all__ = ["pitch_error_cents"]


def pitch_error_cents(
    *,
    pitch: str = "pitch",
    confidence: str = "confidence",
    voiced_above: float = 0.5,
    threshold: float = 1.0,
    statistic: str = "max",
) -> Metric:
    """Return a Metric: the pitch error, in cents, over frames eager calls voiced.

    Frames count as voiced where eager's ``confidence`` output exceeds ``voiced_above``; a NaN
    pitch from the target on such a frame is an infinite error. No voiced frame: error 0.
    ``statistic`` is ``"max"`` (every frame within threshold) or ``"median"`` (typical frame,
    for comparisons where note onsets legitimately differ, such as streamed vs offline).
    """
    if statistic not in ("max", "median"):
        raise ValueError(f"statistic must be 'max' or 'median', got {statistic!r}")

    def compute(expected: Outputs, actual: Outputs) -> float:
        voiced = np.asarray(expected[confidence]).reshape(-1) > voiced_above
        if not voiced.any():
            return 0.0
        e = np.asarray(expected[pitch], dtype=np.float64).reshape(-1)[voiced]
        a = np.asarray(actual[pitch], dtype=np.float64).reshape(-1)[voiced]
        error = np.abs(a - e) * 100.0
        if not np.all(np.isfinite(error)):
            return float(np.inf)
        return float(error.max() if statistic == "max" else np.median(error))

    name = "pitch error on voiced frames" if statistic == "max" else "median pitch error on voiced frames"
    return Metric(name=name, unit="cents", compute=compute, threshold=threshold)
