"""A stream's signal and frames: joining chunks into the whole signal, cutting it into other
chunk sizes, and the framed outputs (the outputs that are frames over time) of a call sequence."""

from __future__ import annotations

import numpy as np
import torch

from .case import Call, Calls, ModelCase, StreamingSpec

__all__ = ["framed_outputs", "frames", "rechunk", "streaming_spec", "whole_signal"]


def streaming_spec(case: ModelCase) -> StreamingSpec:
    if case.streaming is None:
        raise ValueError(f"case {case.name!r} has no streaming spec")
    return case.streaming


def whole_signal(case: ModelCase, calls: Calls) -> Call:
    """The stream as one call: time inputs joined along their axes; static inputs (a sample
    rate) and explicit state (its initial value) as the first call has them."""
    spec = streaming_spec(case)
    axes = spec.time_axes(case.input_names)
    joined = []
    for i, name in enumerate(case.input_names):
        if name in axes:
            joined.append(torch.cat([call[i] for call in calls], dim=axes[name]))
        else:
            joined.append(calls[0][i])
    return tuple(joined)


def rechunk(case: ModelCase, calls: Calls, chunk: int) -> list[Call]:
    """The same signal cut into calls of ``chunk`` time steps (a ragged tail is dropped); only
    time inputs are cut, the others are passed as the first call has them."""
    spec = streaming_spec(case)
    axes = spec.time_axes(case.input_names)
    whole = whole_signal(case, calls)
    first_time = next(i for i, name in enumerate(case.input_names) if name in axes)
    length = whole[first_time].shape[axes[case.input_names[first_time]]]
    return [
        tuple(
            t.narrow(axes[name], start, chunk).contiguous() if name in axes else t
            for name, t in zip(case.input_names, whole)
        )
        for start in range(0, length - chunk + 1, chunk)
    ]


def framed_outputs(case: ModelCase) -> list[str]:
    """Outputs that are frames over time (explicit next-state outputs are not)."""
    spec = streaming_spec(case)
    state_outputs = set(spec.state.values())
    return [name for name in case.output_names if name not in state_outputs]


def frames(case: ModelCase, per_call: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    """The framed outputs of a call sequence, joined along their frame axes."""
    spec = streaming_spec(case)
    framed = set(framed_outputs(case))
    return {
        name: np.concatenate([out[i] for out in per_call], axis=spec.frame_axis(name))
        for i, name in enumerate(case.output_names)
        if name in framed
    }
