"""Task metrics: errors that mean something to the person shipping the model."""

from __future__ import annotations

import numpy as np

from .core.case import Metric, Outputs

__all__ = ["log_spectral_distance", "pitch_error_cents", "token_disagreement"]


def pitch_figures(expected_cents_or_semitones: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """The pitch-tracking field's figures for frames eager calls voiced, pitches in semitones:
    raw pitch accuracy (share within 50 cents), raw chroma accuracy (the same, octave errors
    forgiven), octave-error rate (off by 50 cents or more, but within 50 cents of a whole number
    of octaves away), the 95th percentile, median and largest error in cents (mir_eval's
    definitions; a self-test matches them)."""
    e = np.asarray(expected_cents_or_semitones, dtype=np.float64) * 100.0
    a = np.asarray(actual, dtype=np.float64) * 100.0
    if e.size == 0:
        return {
            "rpa": 1.0,
            "rca": 1.0,
            "octave_rate": 0.0,
            "p95_cents": 0.0,
            "median_cents": 0.0,
            "max_cents": 0.0,
        }
    finite = np.isfinite(a)
    error = np.where(finite, np.abs(a - e), np.inf)
    chroma = np.where(finite, np.abs((a - e + 600.0) % 1200.0 - 600.0), np.inf)
    rpa = float(np.mean(error <= 50.0))
    rca = float(np.mean(chroma <= 50.0))
    return {
        "rpa": rpa,
        "rca": rca,
        "octave_rate": float(np.mean((error > 50.0) & (chroma <= 50.0))),
        "p95_cents": float(np.percentile(error, 95)) if finite.all() else float("inf"),
        "median_cents": float(np.median(error)),
        "max_cents": float(error.max()),
    }


_STATISTICS = {
    "max": ("pitch error on voiced frames (max)", "max_cents", "cents"),
    "median": ("median pitch error on voiced frames", "median_cents", "cents"),
    "p95": ("95th-percentile pitch error on voiced frames", "p95_cents", "cents"),
    "off50": ("voiced frames more than 50 cents off (1 - raw pitch accuracy)", "off50", "fraction"),
}


def pitch_error_cents(
    *,
    pitch: str = "pitch",
    confidence: str = "confidence",
    voiced_above: float = 0.5,
    threshold: float = 1.0,
    statistic: str = "max",
) -> Metric:
    """Return a Metric: the pitch error over frames eager calls voiced, judged by ``statistic``
    and reported with the field's figures (raw pitch and chroma accuracy, octave-error rate,
    95th percentile, median, max; see :func:`pitch_figures`).

    Frames count as voiced where eager's ``confidence`` output exceeds ``voiced_above``; a NaN
    pitch from the target on such a frame is an infinite error. No voiced frame: error 0.
    ``statistic``: ``"max"`` (every frame within threshold cents), ``"p95"``, ``"median"``
    (typical frame: only where onsets legitimately differ, such as streamed vs offline) or
    ``"off50"`` (the share of voiced frames more than 50 cents off, 1 - raw pitch accuracy: an
    octave jump at one onset counts, which a median hides).
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    name, key, unit = _STATISTICS[statistic]

    def compute(expected: Outputs, actual: Outputs) -> tuple[float, dict[str, float]]:
        voiced = np.asarray(expected[confidence]).reshape(-1) > voiced_above
        e = np.asarray(expected[pitch], dtype=np.float64).reshape(-1)[voiced]
        a = np.asarray(actual[pitch], dtype=np.float64).reshape(-1)[voiced]
        figures = pitch_figures(e, a)
        value = 1.0 - figures["rpa"] if key == "off50" else figures[key]
        return value, {k: figures[k] for k in ("rpa", "rca", "octave_rate", "p95_cents")}

    return Metric(name=name, unit=unit, compute=compute, threshold=threshold)


def _power_spectrogram(signal: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    if signal.size < n_fft:
        signal = np.pad(signal, (0, n_fft - signal.size))
    count = 1 + (signal.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop][:count]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2


def log_spectral_distance(
    *,
    output: str = "audio",
    n_ffts: tuple[int, ...] = (512, 1024, 2048),
    floor_db: float = -80.0,
    threshold: float = 1.0,
) -> Metric:
    """Return a Metric: the multi-resolution log-spectral distance in dB between eager's and the
    target's audio (the multi-resolution STFT comparison of vocoder work), with the spectral
    convergence and each resolution's distance reported beside it.

    At each resolution (hop a quarter of the FFT size), per STFT frame, the RMS over frequency of
    the difference of the two power spectra in dB (both floored ``floor_db`` below eager's
    loudest bin), averaged over frames and signals; the judged value is the mean over
    resolutions (a fault one window size smooths over shows at another). Audio of a different
    length from eager's is an infinite distance: the length is part of what the model computes.
    The last axis of ``output`` is time; other axes index signals.
    """

    def compute(expected: Outputs, actual: Outputs) -> tuple[float, dict[str, float]]:
        e = np.asarray(expected[output], dtype=np.float64)
        a = np.asarray(actual[output], dtype=np.float64)
        if e.shape != a.shape or not np.all(np.isfinite(a)):
            return float("inf"), {}
        figures: dict[str, float] = {}
        convergence = []
        for n_fft in n_ffts:
            distances = []
            for e_row, a_row in zip(e.reshape(-1, e.shape[-1]), a.reshape(-1, a.shape[-1])):
                pe = _power_spectrogram(e_row, n_fft, n_fft // 4)
                pa = _power_spectrogram(a_row, n_fft, n_fft // 4)
                floor = max(pe.max(), 1e-20) * 10 ** (floor_db / 10)
                diff = 10 * np.log10(np.maximum(pe, floor)) - 10 * np.log10(np.maximum(pa, floor))
                distances.append(np.sqrt(np.mean(diff**2, axis=-1)).mean())
                me, ma = np.sqrt(pe), np.sqrt(pa)
                convergence.append(np.linalg.norm(me - ma) / max(np.linalg.norm(me), 1e-20))
            figures[f"lsd_{n_fft}_db"] = float(np.mean(distances))
        figures["spectral_convergence"] = float(np.mean(convergence))
        value = float(np.mean([figures[f"lsd_{n}_db"] for n in n_ffts]))
        return value, figures

    return Metric(
        name=f"multi-resolution log-spectral distance of {output}",
        unit="dB",
        compute=compute,
        threshold=threshold,
    )


def token_disagreement(*, output: str = "tokens", threshold: float = 0.0) -> Metric:
    """Return a Metric: the share of token ids that differ from eager's (0 = every token agrees).

    A different shape (a different number of tokens) is total disagreement.
    """

    def compute(expected: Outputs, actual: Outputs) -> float:
        e, a = np.asarray(expected[output]), np.asarray(actual[output])
        if e.shape != a.shape:
            return 1.0
        return float((e != a).mean()) if e.size else 0.0

    return Metric(
        name=f"{output} disagreeing with eager", unit="fraction", compute=compute, threshold=threshold
    )
