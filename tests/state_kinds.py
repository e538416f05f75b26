"""Toy streaming models that keep their state in each place real models keep it: a buffer, a
tensor attribute rebound by forward (an LSTM's ``self.hidden``), a tensor attribute written in
place, a buffer a submodule registers on its first call (beside a window it caches), and a Python
counter. A case module for the self-tests (``tests/test_state_kinds.py``); not in the matrix."""

from __future__ import annotations

import torch
from torch import nn

from harness import ModelCase, StreamingSpec, register, tol

CHANNELS, CHUNK = 4, 8


class BufferState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv1d(CHANNELS, CHANNELS, 1)
        self.register_buffer("level", torch.zeros(1, CHANNELS, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.level.copy_(0.5 * self.level + x.mean(-1, keepdim=True))
        return self.mix(x) + self.level


class AttributeRebound(nn.Module):
    """The pattern of real streaming code: the LSTM's state in plain tensor attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(CHANNELS, 6, batch_first=True)
        self.head = nn.Linear(6, CHANNELS)
        self.hidden = torch.zeros(1, 1, 6)
        self.cell = torch.zeros(1, 1, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, (self.hidden, self.cell) = self.lstm(x.transpose(1, 2), (self.hidden, self.cell))
        return self.head(y).transpose(1, 2)


class AttributeInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv1d(CHANNELS, CHANNELS, 1)
        self.total = torch.zeros(1, CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total.mul_(0.5).add_(x.mean(-1, keepdim=True))
        return self.mix(x) + self.total


class Smoother(nn.Module):
    """Creates its window and its carried sample on the first call (lazy initialisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "window"):
            self.register_buffer("window", torch.hann_window(x.shape[-1]))
            self.register_buffer("previous", torch.zeros_like(x[..., :1]))
            self.ready = True
        elif not self.ready:
            raise RuntimeError("Smoother: window without its set-up")
        out = x * self.window + self.previous
        self.previous.copy_(x[..., -1:])
        return out


class LazyBufferInSubmodule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv1d(CHANNELS, CHANNELS, 1)
        self.smooth = Smoother()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.smooth(self.mix(x))


class PythonCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv1d(CHANNELS, CHANNELS, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.mix(x) * (1.0 + 0.25 * self.calls)


MODELS = {
    "state_buffer": BufferState,
    "state_attribute": AttributeRebound,
    "state_in_place": AttributeInPlace,
    "state_lazy_buffer": LazyBufferInSubmodule,
    "state_counter": PythonCounter,
}


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def _chunks(seed: int, count: int = 6) -> list[tuple[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, CHANNELS, CHUNK, generator=generator),) for _ in range(count)]


for _name, _cls in MODELS.items():
    register(
        ModelCase(
            name=_name,
            build=lambda cls=_cls: _seeded(cls),
            example_inputs=lambda: _chunks(1, 1)[0],
            input_names=("x",),
            output_names=("y",),
            inputs={"noise": lambda: _chunks(2)},
            tolerance={"default": tol(1e-5, 1e-5)},
            tags=frozenset({"toy", "stateful", "streaming"}),
            streaming=StreamingSpec(chunk=CHUNK, input_time_axis=2, output_time_axis=2),
        )
    )


def ground_truth() -> list[tuple[str, str, str]]:
    """Without the harness: each model exported as a user would (``torch.jit.trace``, the dynamo
    ONNX exporter on onnxruntime), from a fresh module, fed the stream; the largest error of each
    call against a fresh eager module (or the exporter's refusal)."""
    import warnings

    import numpy as np
    import onnxruntime as ort

    rows = []
    for name, cls in MODELS.items():
        calls = _chunks(2)
        with torch.no_grad():
            reference = _seeded(cls)
            expected = [reference(*call).numpy() for call in calls]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(_seeded(cls), _chunks(1, 1)[0], check_trace=False)
                runs = {"torch.jit.trace": [traced(*call).numpy() for call in calls]}
                try:
                    program = torch.onnx.export(_seeded(cls), _chunks(1, 1)[0], dynamo=True, verbose=False)
                    session = ort.InferenceSession(program.model_proto.SerializeToString())
                    feed = session.get_inputs()[0].name
                    runs["dynamo ONNX"] = [session.run(None, {feed: c[0].numpy()})[0] for c in calls]
                except Exception as exc:  # the exporter's refusal is the ground truth too
                    cause = exc.__cause__ or exc
                    rows.append((name, "dynamo ONNX", f"refused: {str(cause).splitlines()[0][:90]}"))
        for how, got in runs.items():
            errors = [float(np.abs(g - e).max()) for g, e in zip(got, expected)]
            rows.append((name, how, " ".join(f"{e:.2g}" for e in errors)))
    return rows


if __name__ == "__main__":  # python -m tests.state_kinds: the ground truth table of the README
    print("| model | exported with | largest error per call (6 calls) |\n|---|---|---|")
    for row in ground_truth():
        print("| " + " | ".join(row) + " |")
