"""Hypothesis strategies for model inputs: small, bounded, composable.

In the style of ``hypothesis.extra.numpy``: each function checks its arguments early and returns
a strategy; values are float32 numpy arrays (wrap them into calls with :func:`as_calls`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from hypothesis import strategies as st

__all__ = ["as_calls", "audio", "audio_stream", "images", "masks", "tokens"]

AUDIO_KINDS = ("silence", "full_scale", "clipped", "dc_offset", "impulses", "noise", "tone", "tone_at_edges")


def _check_range(name: str, low: float, high: float) -> None:
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"{name}: need finite low <= high, got {low!r}, {high!r}")


@st.composite
def _audio(
    draw, length: int, sample_rate: int, freq_range: tuple[float, float], kinds: Sequence[str]
) -> np.ndarray:
    kind = draw(st.sampled_from(list(kinds)))
    t = np.arange(length) / sample_rate
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    gain = draw(st.floats(0.01, 1.0))
    if kind == "silence":
        wave = np.zeros(length)
    elif kind == "full_scale":
        wave = np.sign(np.sin(2 * np.pi * draw(st.floats(*freq_range)) * t)) * 1.0
    elif kind == "clipped":
        wave = np.clip(3.0 * np.sin(2 * np.pi * draw(st.floats(*freq_range)) * t), -1.0, 1.0)
    elif kind == "dc_offset":
        wave = draw(st.floats(-0.9, 0.9)) + 0.1 * np.sin(2 * np.pi * draw(st.floats(*freq_range)) * t)
    elif kind == "impulses":
        wave = np.zeros(length)
        wave[rng.integers(0, length, size=draw(st.integers(1, 8)))] = gain
    elif kind == "noise":
        wave = gain * rng.standard_normal(length)
    elif kind == "tone":
        wave = gain * np.sin(2 * np.pi * draw(st.floats(*freq_range)) * t)
    else:  # tone_at_edges: the lowest or highest frequency the model is built for
        edge = draw(st.sampled_from([freq_range[0], freq_range[1]]))
        wave = gain * np.sin(2 * np.pi * edge * t)
    return wave.astype(np.float32)


def audio(
    *,
    min_length: int,
    max_length: int,
    sample_rate: int,
    freq_range: tuple[float, float] = (50.0, 2000.0),
    kinds: Sequence[str] = AUDIO_KINDS,
    multiple_of: int = 1,
) -> st.SearchStrategy[np.ndarray]:
    """Return a strategy for mono float32 audio: silence, full-scale and clipped signals, DC
    offset, impulses, noise, tones, and tones at the edges of ``freq_range``.

    >>> audio(min_length=160, max_length=1600, sample_rate=16000, multiple_of=160)
    """
    if not 1 <= min_length <= max_length:
        raise ValueError(f"audio: need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if multiple_of < 1 or max_length < multiple_of:
        raise ValueError(f"audio: multiple_of={multiple_of} must be in [1, max_length]")
    _check_range("audio freq_range", *freq_range)
    if freq_range[1] >= sample_rate / 2:
        raise ValueError(f"audio: freq_range {freq_range} reaches Nyquist ({sample_rate / 2} Hz)")
    unknown = set(kinds) - set(AUDIO_KINDS)
    if unknown or not kinds:
        raise ValueError(f"audio: unknown kinds {sorted(unknown)} (known: {', '.join(AUDIO_KINDS)})")
    lengths = st.integers(-(-min_length // multiple_of), max_length // multiple_of).map(
        lambda n: n * multiple_of
    )
    return lengths.flatmap(lambda n: _audio(n, sample_rate, freq_range, tuple(kinds)))


def audio_stream(
    *, chunk: int, min_chunks: int, max_chunks: int, sample_rate: int, batch: int = 1, **audio_options
) -> st.SearchStrategy[list[tuple[torch.Tensor, ...]]]:
    """Return a strategy for streams: audio cut into ``(batch, chunk)`` calls.

    >>> audio_stream(chunk=160, min_chunks=1, max_chunks=40, sample_rate=16000)
    """
    if not 1 <= min_chunks <= max_chunks:
        raise ValueError(f"audio_stream: need 1 <= min_chunks <= max_chunks, got {min_chunks}, {max_chunks}")
    waves = audio(
        min_length=chunk * min_chunks,
        max_length=chunk * max_chunks,
        sample_rate=sample_rate,
        multiple_of=chunk,
        **audio_options,
    )
    return waves.map(lambda wave: as_calls(wave.reshape(-1, chunk), batch=batch))


def images(
    *,
    channels: int = 3,
    height: int,
    width: int,
    batch: tuple[int, int] = (1, 1),
    low: float = -3.0,
    high: float = 3.0,
) -> st.SearchStrategy[np.ndarray]:
    """Return a strategy for float32 image batches: constant, saturated, noise, and smooth
    natural-like gradients, in ``[low, high]`` (a normalised image's range).

    >>> images(height=224, width=224, batch=(1, 8))
    """
    _check_range("images value range", low, high)
    if min(channels, height, width) < 1 or not 1 <= batch[0] <= batch[1]:
        raise ValueError(f"images: bad shape channels={channels} height={height} width={width} batch={batch}")

    @st.composite
    def draw_images(draw) -> np.ndarray:
        n = draw(st.integers(*batch))
        kind = draw(st.sampled_from(["constant", "saturated", "noise", "gradient"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        shape = (n, channels, height, width)
        if kind == "constant":
            out = np.full(shape, draw(st.floats(low, high)))
        elif kind == "saturated":
            out = np.where(rng.random(shape) > 0.5, high, low)
        elif kind == "noise":
            out = rng.uniform(low, high, shape)
        else:
            yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
            angle = draw(st.floats(0, 2 * np.pi))
            ramp = np.cos(angle) * xx + np.sin(angle) * yy
            out = np.broadcast_to(low + (high - low) * (ramp - ramp.min()) / (np.ptp(ramp) or 1.0), shape)
        return np.ascontiguousarray(out, dtype=np.float32)

    return draw_images()


def tokens(*, vocab: int, length: int | tuple[int, int], batch: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Return a strategy for int64 token ids in ``[0, vocab)``, ``(batch, length)``.

    >>> tokens(vocab=1024, length=(1, 100))
    """
    if vocab < 1 or batch < 1:
        raise ValueError(f"tokens: need vocab >= 1 and batch >= 1, got {vocab}, {batch}")
    low, high = (length, length) if isinstance(length, int) else length
    if not 1 <= low <= high:
        raise ValueError(f"tokens: bad length {length!r}")
    return st.integers(low, high).flatmap(
        lambda n: st.lists(st.integers(0, vocab - 1), min_size=n * batch, max_size=n * batch).map(
            lambda ids: np.array(ids, dtype=np.int64).reshape(batch, n)
        )
    )


def masks(*, length: int, batch: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Return a strategy for boolean masks ``(batch, length)``: none, all, periodic, random.

    >>> masks(length=100)
    """
    if length < 1 or batch < 1:
        raise ValueError(f"masks: need length >= 1 and batch >= 1, got {length}, {batch}")

    @st.composite
    def draw_mask(draw) -> np.ndarray:
        kind = draw(st.sampled_from(["none", "all", "periodic", "random"]))
        if kind in ("none", "all"):
            return np.full((batch, length), kind == "all")
        if kind == "periodic":
            period = draw(st.integers(1, max(1, length)))
            return np.broadcast_to(np.arange(length) % period == 0, (batch, length)).copy()
        bits = draw(st.lists(st.booleans(), min_size=batch * length, max_size=batch * length))
        return np.array(bits).reshape(batch, length)

    return draw_mask()


def as_calls(frames: np.ndarray, *, batch: int = 1) -> list[tuple[torch.Tensor, ...]]:
    """Rows of ``frames`` as single-input calls of shape ``(batch, ...)`` (rows repeated over the batch)."""
    return [
        (torch.from_numpy(np.ascontiguousarray(row)).unsqueeze(0).expand(batch, *row.shape).contiguous(),)
        for row in frames
    ]
