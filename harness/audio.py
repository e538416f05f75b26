"""Seeded synthetic audio for canonical input sets: tones, scales, sweeps, silence, voices."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.signal import lfilter

__all__ = [
    "a_major_scale",
    "chunk_calls",
    "harmonic_tone",
    "midi_to_hz",
    "pitch_sweep",
    "silence",
    "sine",
    "voiced_speech",
]


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def sine(freq: float, seconds: float, sr: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A pure tone, e.g. C4 at 261.63 Hz."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def harmonic_tone(
    freq: float,
    seconds: float,
    sr: int,
    *,
    harmonics: int = 6,
    vibrato_cents: float = 0.0,
    vibrato_hz: float = 5.5,
    amplitude: float = 0.4,
    attack: float = 0.02,
    release: float = 0.03,
) -> np.ndarray:
    """A sung-like tone: decaying harmonics, optional vibrato, attack and release ramps."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    inst_freq = freq * 2.0 ** (vibrato_cents / 1200.0 * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(inst_freq) / sr
    wave = sum((0.7**k) * np.sin((k + 1) * phase) for k in range(harmonics))
    envelope = np.ones(n)
    a, r = int(attack * sr), int(release * sr)
    if a:
        envelope[:a] = np.linspace(0.0, 1.0, a)
    if r:
        envelope[-r:] = np.minimum(envelope[-r:], np.linspace(1.0, 0.0, r))
    wave = wave / np.max(np.abs(wave) + 1e-12)
    return (amplitude * envelope * wave).astype(np.float32)


def a_major_scale(
    sr: int, *, note_seconds: float = 0.2, pause_seconds: float = 0.03, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An ascending A-major scale from A3, sung-like (vibrato, onsets, short pauses), with noise.

    Returns the waveform and the true MIDI pitch per sample (NaN in pauses).
    """
    rng = np.random.default_rng(seed)
    steps = [0, 2, 4, 5, 7, 9, 11, 12]
    pieces, truth = [], []
    for step in steps:
        midi = 57 + step
        tone = harmonic_tone(float(midi_to_hz(midi)), note_seconds, sr, vibrato_cents=20.0)
        pieces += [tone, np.zeros(int(pause_seconds * sr), np.float32)]
        truth += [np.full(tone.size, float(midi)), np.full(int(pause_seconds * sr), np.nan)]
    wave = np.concatenate(pieces)
    wave = wave + rng.normal(0.0, 1e-3, wave.size).astype(np.float32)
    return wave.astype(np.float32), np.concatenate(truth)


def pitch_sweep(sr: int, seconds: float, midi_from: float = 57.0, midi_to: float = 81.0) -> np.ndarray:
    """A harmonic tone gliding linearly in pitch (MIDI) from ``midi_from`` to ``midi_to``."""
    n = int(round(seconds * sr))
    midi = np.linspace(midi_from, midi_to, n)
    phase = 2 * np.pi * np.cumsum(midi_to_hz(midi)) / sr
    wave = sum((0.6**k) * np.sin((k + 1) * phase) for k in range(4))
    return (0.4 * wave / np.max(np.abs(wave))).astype(np.float32)


def silence(seconds: float, sr: int, *, noise_floor: float = 0.0, seed: int = 0) -> np.ndarray:
    """Digital silence, or a very quiet noise floor."""
    n = int(round(seconds * sr))
    if not noise_floor:
        return np.zeros(n, np.float32)
    return np.random.default_rng(seed).normal(0.0, noise_floor, n).astype(np.float32)


def chunk_calls(wave: np.ndarray, chunk: int, *, batch: int = 1) -> list[tuple[torch.Tensor, ...]]:
    """Split a waveform into ``(batch, chunk)`` calls, dropping a ragged tail."""
    usable = (wave.size // chunk) * chunk
    frames = torch.from_numpy(np.ascontiguousarray(wave[:usable])).reshape(-1, chunk)
    return [(frame.unsqueeze(0).expand(batch, chunk).contiguous(),) for frame in frames]


def voiced_speech(
    seconds: float,
    sr: int,
    *,
    seed: int,
    f0: float = 140.0,
    formants: tuple[tuple[float, float], ...] = ((700, 90), (1200, 110), (2600, 160)),
    syllable_hz: float = 4.0,
) -> np.ndarray:
    """Voiced syllables: a glottal pulse train (f0 gliding by +-40 Hz) through formant
    resonators (frequency, bandwidth in Hz), at a syllable rate with pauses, peak 0.3, a faint
    noise floor; seeded. Two voices differ by ``f0`` and ``formants``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    phase = np.cumsum((f0 + 40 * np.sin(2 * np.pi * 0.7 * t)) / sr)
    source = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    voice = np.zeros(n)
    for formant, bandwidth in formants:
        r = math.exp(-math.pi * bandwidth / sr)
        theta = 2 * math.pi * formant / sr
        voice += lfilter([1.0], [1.0, -2 * r * math.cos(theta), r**2], source)
    syllables = (np.sin(2 * np.pi * syllable_hz * t) > -0.2) & (np.sin(2 * np.pi * 0.5 * t) > -0.6)
    window = np.hanning(801) / np.hanning(801).sum()
    signal = voice * np.convolve(syllables.astype(np.float64), window, mode="same")
    signal = 0.3 * signal / (np.abs(signal).max() + 1e-9) + 0.003 * rng.standard_normal(n)
    return signal.astype(np.float32)
