"""Task metrics judged by the tails users care about, matched against the field's reference
implementation (mir_eval) and planted faults a median hides."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import pitch_error_cents, pitch_figures


def _mir_eval_figures(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    mir_eval = pytest.importorskip("mir_eval")
    ref_cent = 1200.0 * np.log2(440.0 * 2 ** ((reference - 69) / 12) / 10.0)
    est_cent = 1200.0 * np.log2(440.0 * 2 ** ((estimate - 69) / 12) / 10.0)
    voicing = np.ones_like(reference)
    return (
        mir_eval.melody.raw_pitch_accuracy(voicing, ref_cent, voicing, est_cent, cent_tolerance=50),
        mir_eval.melody.raw_chroma_accuracy(voicing, ref_cent, voicing, est_cent, cent_tolerance=50),
    )


@pytest.mark.parametrize("seed", range(5))
def test_raw_pitch_and_chroma_accuracy_match_mir_eval(seed):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(45, 85, size=400)
    estimate = reference + rng.normal(0, 0.3, size=400)  # semitones: many frames past 50 cents
    jumps = rng.random(400) < 0.1
    estimate[jumps] += rng.choice([-12.0, 12.0, 24.0], size=jumps.sum())  # octave errors
    figures = pitch_figures(reference, estimate)
    rpa, rca = _mir_eval_figures(reference, estimate)
    assert figures["rpa"] == pytest.approx(rpa, abs=1e-9)
    assert figures["rca"] == pytest.approx(rca, abs=1e-9)
    assert figures["octave_rate"] == pytest.approx(rca - rpa, abs=1e-9)


def _outputs(pitch: np.ndarray) -> dict[str, np.ndarray]:
    return {"pitch": pitch.reshape(-1, 1), "confidence": np.ones((pitch.size, 1))}


def test_an_octave_jump_at_one_onset_fails_the_tail_while_the_median_passes():
    eager = np.repeat([57.0, 59.0, 61.0, 62.0, 64.0], 40)
    int8 = eager + 0.2  # 20 cents everywhere: a median of 20 passes a 25-cent median threshold
    int8[80] += 12.0  # one octave jump at a note onset
    median = pitch_error_cents(threshold=25.0, statistic="median")(_outputs(eager), _outputs(int8))
    tail = pitch_error_cents(threshold=0.0, statistic="off50")(_outputs(eager), _outputs(int8))
    assert median and median.value == pytest.approx(20.0)
    assert not tail and tail.value == pytest.approx(1 / 200)
    assert tail.figures["octave_rate"] == pytest.approx(1 / 200)
    assert "rpa 0.995" in tail.summary() and "octave_rate 0.005" in tail.summary()
    same = pitch_error_cents(threshold=0.0, statistic="off50")(_outputs(eager), _outputs(eager + 0.2))
    assert same and same.figures["rpa"] == 1.0


def test_nan_on_a_voiced_frame_is_an_infinite_error():
    eager = np.full(10, 60.0)
    broken = eager.copy()
    broken[3] = np.nan
    result = pitch_error_cents(threshold=10.0)(_outputs(eager), _outputs(broken))
    assert not result and not np.isfinite(result.value)
    assert pitch_error_cents(threshold=0.0, statistic="off50")(_outputs(eager), _outputs(broken)).value > 0
