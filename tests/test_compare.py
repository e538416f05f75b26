"""compare(): truthy results that explain themselves."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Tolerance, compare, tol


def test_equal_arrays_pass_with_zero_error():
    result = compare(np.ones((2, 3)), np.ones((2, 3)), tol(0.0))
    assert result
    assert result.max_abs == 0.0 and result.mismatches == 0 and result.needed_atol == 0.0


def test_mismatch_reports_where_how_many_and_what_would_pass():
    expected = np.zeros((4, 5), np.float32)
    actual = expected.copy()
    actual[2, 3] = 0.5
    actual[0, 0] = 0.01
    result = compare(expected, actual, tol(0.02), name="logits")
    assert not result
    assert result.worst_index == (2, 3)
    assert result.mismatches == 1 and result.total == 20
    assert result.needed_atol == pytest.approx(0.5)
    text = result.summary()
    assert "logits: MISMATCH" in text and "(2, 3)" in text and "would pass at atol=0.5" in text


def test_relative_tolerance_is_applied():
    assert compare(np.array([100.0]), np.array([100.5]), Tolerance(atol=0.0, rtol=1e-2))
    assert not compare(np.array([100.0]), np.array([102.0]), Tolerance(atol=0.0, rtol=1e-2))


def test_nan_where_reference_is_finite_always_fails():
    expected = np.array([1.0, 2.0, 3.0])
    actual = np.array([1.0, np.nan, 3.0])
    result = compare(expected, actual, tol(1e9, 1e9))
    assert not result
    assert result.nonfinite_mismatches == 1 and result.first_nonfinite_index == (1,)
    assert result.needed_atol is None
    assert "NaN/Inf where eager is finite" in result.summary() and "no tolerance passes" in result.summary()


def test_nan_in_both_counts_as_equal_but_inf_sign_matters():
    assert compare(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), tol(0.0))
    assert not compare(np.array([np.inf]), np.array([-np.inf]), tol(1.0))
    assert not compare(np.array([np.nan]), np.array([0.0]), tol(1.0))


def test_shape_mismatch_is_a_clear_failure():
    result = compare(np.zeros((2, 3)), np.zeros((3, 2)), tol(1.0), name="y")
    assert not result
    assert "shape (3, 2)" in result.summary() and "(2, 3)" in result.summary()


def test_negative_tolerance_is_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        Tolerance(atol=-1.0)
