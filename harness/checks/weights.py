"""Weight audit: the artifact's named weights against eager's, to diagnose an incomplete weight
transfer (a layer re-initialised or never loaded, a head of the wrong width).

Exporters rename, fold and transpose weights (the ONNX exporters fold BatchNorm into the
convolution before it), so a weight that merely differs proves nothing. The audit reports a
weight only where the artifact's tensor has the eager name (or ends with it) and either has a
different shape, or has values unrelated to eager's (correlation below 0.5: re-initialised,
not rescaled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..targets import Artifact
from ..targets import target as find_target

__all__ = ["WeightAudit", "artifact_weights", "audit_weights"]

#: Below this correlation with eager's values a same-named weight counts as unrelated.
UNRELATED_CORRELATION = 0.5


def artifact_weights(artifact: Artifact) -> dict[str, np.ndarray] | None:
    """Named weights stored in the artifact, where its format keeps names (its target's
    ``Target.weights``: ONNX, TorchScript, torch.export); None for formats that do not
    (ExecuTorch), targets not registered here, or files that cannot be read."""
    try:
        return find_target(artifact.target).weights(artifact)
    except Exception:  # the audit is a diagnosis aid; an unreadable file is reported elsewhere
        return None


@dataclass(frozen=True)
class WeightAudit:
    """How many eager weights were found by name in the artifact, and those that differ."""

    compared: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return not self.problems

    def diagnosis(self) -> str:
        if not self.problems:
            return f"weights: the {self.compared} weights found by name match eager's"
        shown = "; ".join(self.problems[:4])
        more = f"; and {len(self.problems) - 4} more" if len(self.problems) > 4 else ""
        return (
            f"incomplete weight transfer: {len(self.problems)} of {self.compared} weights found by name "
            f"differ from eager's: {shown}{more}"
        )


def _match(name: str, weights: dict[str, np.ndarray]) -> str | None:
    if name in weights:
        return name
    suffix = "." + name
    found = [k for k in weights if k.endswith(suffix)]
    return found[0] if len(found) == 1 else None


def audit_weights(module: torch.nn.Module, weights: dict[str, np.ndarray]) -> WeightAudit:
    """Compare eager's parameters with the artifact's same-named tensors."""
    problems = []
    compared = 0
    params = dict(module.named_parameters())
    for name, param in params.items():
        key = _match(name, weights)
        if key is None:
            continue
        compared += 1
        expected = param.detach().numpy()
        actual = np.asarray(weights[key])
        if actual.shape != expected.shape:
            if actual.T.shape == expected.shape and actual.ndim == 2:
                actual = actual.T  # a Linear weight stored transposed for MatMul
            else:
                problems.append(f"{name} has shape {tuple(actual.shape)}, eager {tuple(expected.shape)}")
                continue
        if np.allclose(actual, expected, rtol=1e-5, atol=1e-7) or expected.size < 2:
            continue
        e, a = expected.astype(np.float64).ravel(), actual.astype(np.float64).ravel()
        if e.std() == 0 or a.std() == 0:
            correlation = 0.0
        else:
            correlation = float(np.corrcoef(e, a)[0, 1])
        if not correlation >= UNRELATED_CORRELATION:
            problems.append(
                f"{name} holds values unrelated to eager's (correlation {correlation:.2f}, max |diff| "
                f"{np.abs(a - e).max():.3g}): re-initialised or never loaded?"
            )
    return WeightAudit(compared, tuple(problems))
