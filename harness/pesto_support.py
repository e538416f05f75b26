"""PESTO (pesto-pitch) without torchaudio, and an export-friendly wrapper of its streaming model.

``import pesto`` imports ``torchaudio`` at module level, only to read audio files; the PyPI
torchaudio wheel fails to load beside the CPU torch. ``import_pesto`` imports pesto with a
placeholder ``torchaudio`` when the real one cannot load, and removes the placeholder afterwards.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import torch
from torch import nn

__all__ = ["ExportablePesto", "import_pesto", "load_streaming_pesto"]


def _torchaudio_placeholder(reason: str) -> types.ModuleType:
    module = types.ModuleType("torchaudio")

    def __getattr__(name: str) -> Any:
        raise ImportError(
            f"torchaudio could not be loaded ({reason}); pesto needs it only to read audio files"
        )

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def import_pesto() -> types.ModuleType:
    """Import the ``pesto`` package, working around a torchaudio that cannot load."""
    if "pesto" in sys.modules:
        return sys.modules["pesto"]
    try:
        import torchaudio  # noqa: F401
    except Exception as exc:  # the wheel raises OSError from a missing CUDA library
        placeholder = _torchaudio_placeholder(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        missing = object()
        previous = sys.modules.get("torchaudio", missing)
        sys.modules["torchaudio"] = placeholder
        try:
            import pesto
        finally:
            if sys.modules.get("torchaudio") is placeholder:
                if previous is missing:
                    del sys.modules["torchaudio"]
                else:
                    sys.modules["torchaudio"] = previous  # type: ignore[assignment]
        return pesto
    import pesto

    return pesto


def load_streaming_pesto(
    checkpoint: str = "mir-1k_g7",
    *,
    step_ms: float = 10.0,
    sampling_rate: int = 16000,
    streaming: bool = True,
) -> nn.Module:
    """The packaged PESTO model, by default in streaming mode (cached convolution, batch size 1)."""
    pesto = import_pesto()
    options = {"streaming": True, "max_batch_size": 1} if streaming else {}
    model = pesto.load_model(checkpoint, step_size=step_ms, sampling_rate=sampling_rate, **options)
    return model.eval()


class ExportablePesto(nn.Module):
    """The packaged ``PESTO.forward`` rewritten with real arithmetic, so that exporters accept it.

    The packaged forward takes the magnitude of a complex tensor (``view_as_complex``, complex
    ``abs``) and rolls the activations by ``round(self.shift.item())``; here the magnitude is
    ``sqrt(re**2 + im**2)`` of the HCQT's last axis and the roll is a constant computed once.
    The streaming state (the cached convolution's padding buffer) is the packaged module's own.
    Returns ``(pitch, confidence, volume, activations)``, pitch in fractional MIDI semitones.
    """

    def __init__(self, packaged: nn.Module) -> None:
        super().__init__()
        self.hcqt = packaged.preprocessor.hcqt_kernels
        self.confidence = packaged.confidence
        self.crop_cqt = packaged.crop_cqt
        self.encoder = packaged.encoder
        self.reduction = packaged.reduction
        self.roll_bins = -round(float(packaged.shift) * packaged.bins_per_semitone)
        self.eps = float(torch.finfo(torch.float32).eps)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from pesto.utils import reduce_activations

        batch = audio.size(0)
        hcqt = self.hcqt(audio)  # (batch, harmonics, freqs, frames, 2)
        magnitude = torch.sqrt(hcqt[..., 0] ** 2 + hcqt[..., 1] ** 2).permute(0, 3, 1, 2)
        log_cqt = 20.0 * torch.log10(torch.clamp(magnitude, min=self.eps))
        # The packaged model scales the dB CQT in place before both the energy and the encoder see it.
        x = log_cqt.flatten(0, 1) * (math.log(10) / 10.0)
        energy = x.exp().squeeze(1)
        volume = energy.sum(dim=-1)
        confidence = self.confidence(energy)
        activations = self.encoder(self.crop_cqt(x))
        activations = activations.view(batch, -1, activations.size(-1))
        activations = activations.roll(self.roll_bins, -1)
        pitch = reduce_activations(activations, reduction=self.reduction)
        return pitch, confidence.view(batch, -1), volume.view(batch, -1), activations
