"""The fixed-shape fallback for declared dynamic dimensions, through the plugin on real exporters.

Where torch.export refuses a declared dynamic range (a ceil-mode max-pool's parity guard on H/W,
a GRU's length specialised to the example's), the torch.export-based targets export at the
example's sizes instead; where the dynamo ONNX exporter fixes a declared length without a word,
the written graph's input shapes say so. Either way the fixed dimension is one cell's verdict
(``dynamic-shapes``, quoting the refusal), the other cells judge the inputs the artifact takes
and skip, naming the fixed dimension, those it cannot; each input's cell runs its own input.
A model whose dynamic range exports keeps its dynamic cells and gets no fallback note.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

CASES = """
import torch
from torch import nn
from harness import ModelCase, register, tol


class CeilPool(nn.Module):
    # two ceil-mode poolings: torch.export guards on the parity of H and W
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x):
        return self.pool(self.pool(x))


class GruEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 8)
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, tokens):
        out, _ = self.gru(self.embed(tokens))
        return out.mean(1)


class Scale(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0


def _image(size, seed):
    return torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _tokens(length, seed):
    return torch.randint(0, 10, (1, length), generator=torch.Generator().manual_seed(seed))


register(ModelCase(
    name="ceil_pool", build=lambda: CeilPool().eval(), example_inputs=lambda: (_image(8, 0),),
    input_names=("x",), output_names=("y",),
    inputs={"eight": lambda: [(_image(8, 1),)], "twelve": lambda: [(_image(12, 2),)]},
    dynamic_dims={"x": {2: (4, 16, "h"), 3: (4, 16, "w")}},
    tolerance={"default": tol(1e-5, 1e-5)},
))
# the primary input is one the fixed-shape export cannot take: "nine" must run on its own
register(ModelCase(
    name="gru_encoder", build=lambda: GruEncoder().eval(), example_inputs=lambda: (_tokens(9, 0),),
    input_names=("tokens",), output_names=("code",),
    inputs={"twenty": lambda: [(_tokens(20, 1),)], "nine": lambda: [(_tokens(9, 2),)]},
    dynamic_dims={"tokens": {1: (2, 40, "length")}},
    tolerance={"default": tol(1e-5, 1e-5)},
))
register(ModelCase(
    name="scale", build=lambda: Scale().eval(), example_inputs=lambda: (torch.ones(2, 3),),
    input_names=("x",), output_names=("y",),
    inputs={"ones": lambda: [(torch.ones(2, 3),)], "five": lambda: [(torch.full((5, 3), 0.5),)]},
    dynamic_dims={"x": {0: (1, 8, "batch")}},
))
"""


def _run(pytester, inner_pytest):
    """One inner run of the three toys on eager, torch-export and the dynamo ONNX exporter."""
    result = inner_pytest(
        "--conformance-targets",
        "eager,torch-export,onnx",
        "--conformance-report",
        "out",
        cases=CASES,
        suites=("test_outputs", "test_inputs"),
    )
    matrix = json.loads((pytester.path / "out" / "conformance.json").read_text())
    cells = {
        (row["case"], row["target"], suite, name): value
        for row in matrix["rows"]
        for suite, body in row["suites"].items()
        for name, value in body["inputs"].items()
    }
    sidecars = {
        path.name.removesuffix(".json"): json.loads(path.read_text())["meta"]
        for path in (pytester.path / "cache").rglob("*.json")
        if path.name.endswith((".pt2.json", ".onnx.json"))
    }
    return result, cells, sidecars


def test_a_refused_or_silently_fixed_range_is_one_cell_and_the_rest_is_judged(pytester, inner_pytest):
    result, cells, sidecars = _run(pytester, inner_pytest)
    status = {key: value["status"] for key, value in cells.items()}
    reason = {key: value["reason"] for key, value in cells.items()}
    # only the three dynamic-shapes cells fail the run; nothing is a fail
    result.assert_outcomes(passed=28, failed=3, skipped=8)
    assert "fail" not in status.values()

    # ceil-mode pooling: torch.export refuses H/W, the fixed-shape export is judged
    pool = ("ceil_pool", "torch-export")
    assert status[(*pool, "dynamic-shapes", "eight")] == "export-error"
    said = reason[(*pool, "dynamic-shapes", "eight")]
    assert said.startswith(
        "torch-export could not export ceil_pool: its declared dynamic range: h = 8, w = 8 fixed"
    )
    assert "Constraints violated (h, w)!" in said
    assert "satisfy the generated guard" in said  # the guard itself, not only the headline
    detail = cells[(*pool, "dynamic-shapes", "eight")]["detail"]
    assert "'w' (input 'x' axis 3) fixed at 8, declared 4-16" in detail
    assert "Not all values of w = L['x'].size()[3]" in detail  # the whole refusal in the JSON
    assert status[(*pool, "equivalence", "eight")] == "pass"
    assert status[(*pool, "determinism", "eight")] == "pass"
    assert status[(*pool, "equivalence", "twelve")] == "skip"
    assert reason[(*pool, "equivalence", "twelve")] == (
        "not judged on this input: the artifact holds dimension 'h' (input 'x' axis 2) at 8 (declared 4-16); "
        "this input has 12; the dynamic-shapes cell reports the fixed dimension"
    )
    meta = sidecars["ceil_pool.pt2"]
    assert meta["dims_fixed"]["h"] == {"input": "x", "axis": 2, "size": 8, "low": 4, "high": 16}
    assert meta["inputs"][0]["shape"] == [1, 1, 8, 8]  # the sidecar says what the file takes
    # refuted: the dynamo ONNX exporter keeps H/W dynamic for the same model, and its graph is
    # right at other sizes: no fallback, dynamic cells judged
    assert status[("ceil_pool", "onnx", "dynamic-shapes", "eight")] == "pass"
    assert status[("ceil_pool", "onnx", "equivalence", "twelve")] == "pass"
    assert "dims_fixed" not in sidecars["ceil_pool.onnx"]

    # the GRU's length: torch.export refuses it (specialised to 9); the ONNX exporter fixes it silently
    for target in ("torch-export", "onnx"):
        gru = ("gru_encoder", target)
        assert status[(*gru, "dynamic-shapes", "twenty")] == "export-error"
        assert reason[(*gru, "dynamic-shapes", "twenty")].startswith(
            f"{target} could not export gru_encoder: its declared dynamic range: length = 9 fixed"
        )
        assert "specialized it to be a constant (9)" in reason[(*gru, "dynamic-shapes", "twenty")]
        # the primary input cannot be fed: its cells skip naming the dimension, never fail
        for suite in ("equivalence", "determinism"):
            assert status[(*gru, suite, "twenty")] == "skip"
            assert (
                "holds dimension 'length' (input 'tokens' axis 1) at 9 (declared 2-40); this input has 20"
                in (reason[(*gru, suite, "twenty")])
            )
        # the other input runs its own run (not the primary's rejection) and passes
        assert status[(*gru, "equivalence", "nine")] == "pass"
    silent = reason[("gru_encoder", "onnx", "dynamic-shapes", "twenty")]
    assert (
        "the onnx exporter wrote 'length' (input 'tokens' axis 1) fixed at 9, declared 2-40, without an error"
        in silent
    )
    assert "torch.export refuses the range" in silent
    assert sidecars["gru_encoder.onnx"]["dims_fixed"]["length"]["size"] == 9
    assert (
        "exported at the example's sizes"
        in reason[("gru_encoder", "torch-export", "dynamic-shapes", "twenty")]
    )

    # refuted: a range that exports keeps its dynamic cells, with no fallback note
    for target in ("torch-export", "onnx"):
        assert status[("scale", target, "dynamic-shapes", "ones")] == "pass"
        assert status[("scale", target, "equivalence", "five")] == "pass"
    for name in ("scale.pt2", "scale.onnx"):
        assert "dims_fixed" not in sidecars[name] and "dims_fixed_because" not in sidecars[name]
        assert sidecars[name]["inputs"][0]["shape"][0] == [1, 8, "batch"]
    text = result.stdout.str()
    assert "dynamic-shapes [eight]: torch-export could not export ceil_pool" in text
