"""Whole causes: an exporter's or runtime's refusal keeps its guard, the user's source line, the
unsupported operator and what a C++ runtime logged, in one line for the terminal and whole in
the JSON report; a grouped reason gives each input's own cause. Each is reproduced with a toy on
the real exporter or runtime; an ordinary one-line error stays one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.export import Dim

import harness
from harness import ModelCase
from harness.core.errors import TargetRunError, describe_exception, salient_lines
from harness.reports.matrix import ConformanceReport
from harness.targets.base import ExportError

pytestmark = pytest.mark.filterwarnings("ignore")


class _CeilPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x):
        return self.pool(self.pool(x))


class _DataBranch(nn.Module):
    def forward(self, x):
        if x.max() > 0:  # a data-dependent guard: torch.export refuses it
            return x + 1
        return x - 1


class _Spectrum(nn.Module):
    def forward(self, wav):
        return torch.stft(wav, 64, hop_length=16, window=torch.hann_window(64), return_complex=True).abs()


class _Affine(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0


def _case(name: str, module: nn.Module, example: torch.Tensor, **declared) -> ModelCase:
    return ModelCase(
        name=name,
        build=lambda: module.eval(),
        example_inputs=lambda: (example,),
        input_names=("x",),
        output_names=("y",),
        inputs={"example": lambda: [(example,)]},
        **declared,
    )


def test_a_refused_range_keeps_its_guard():
    h = Dim("h", min=4, max=16)
    with pytest.raises(Exception) as refused:
        torch.export.export(
            _CeilPool().eval(), (torch.randn(1, 1, 8, 8),), dynamic_shapes=({2: h},), strict=False
        )
    kind, line = describe_exception(refused.value)
    assert kind == "UserError"
    assert line.startswith("Constraints violated (h)!")
    assert "For more information" not in line  # torch's advice is not the cause
    assert (
        "Not all values of h = L['x'].size()[2] in the specified range 4 <= h <= 16 satisfy the generated guard"
        in line
    )


def test_a_data_dependent_guard_keeps_the_user_source_line(tmp_path):
    x = torch.randn(2, 3)
    with pytest.raises(ExportError) as refused:
        harness.target("torch-export").export(_case("data_branch", _DataBranch(), x), tmp_path)
    first, *rest = str(refused.value).splitlines()
    assert "Could not guard on data-dependent expression" in first
    this_file = Path(__file__).resolve()
    assert f'File "{this_file}", line ' in first and "in forward: if x.max() > 0:" in first
    whole = "\n".join(rest)
    assert "The following call raised this error" in whole  # the exporter's whole message is kept


def test_openvino_names_the_operator_it_cannot_convert(tmp_path):
    wav = torch.randn(1, 256)
    case = _case("spectrum", _Spectrum(), wav, dynamic_dims={"x": {1: (128, 1024, "samples")}})
    with pytest.raises(ExportError) as refused:
        harness.target("openvino").export(case, tmp_path)
    first = str(refused.value).splitlines()[0]
    assert "unconverted_ops_report.cpp:151" in first
    assert "Conversion is failed for: ReduceL2-20, STFT-20" in first
    assert "Shape of signal input must be static" in first
    assert "While validating ONNX node '<Node(STFT)" in str(refused.value)  # whole, after the first line


def test_executorch_error_codes_quote_what_the_runtime_logged(tmp_path):
    case = _case("affine", _Affine(), torch.ones(2, 3))
    artifact = harness.target("executorch-portable").export(case, tmp_path)
    artifact.meta.pop("inputs")  # let the runtime itself see a size the program does not take
    with harness.target("executorch-portable").load(artifact) as runner:
        with pytest.raises(TargetRunError) as rejected:
            runner.run(torch.ones(3, 3))
        first = str(rejected.value).splitlines()[0]
        assert "error 0x10" in first
        assert "Attempted to resize a static tensor. Expected shape (2, 3), but received (3, 3)." in first
        assert "Error resizing tensor at input 0" in first
        assert runner.run(torch.full((2, 3), 2.0))[0].tolist() == [[5.0] * 3] * 2  # still runs afterwards


def test_each_input_of_a_grouped_reason_gives_its_own_cause(tmp_path):
    report = ConformanceReport(tmp_path)
    cell = {"case_name": "pitch", "target_name": "onnx", "suite": "equivalence"}
    sweep = "onnx vs eager: pitch max |diff| 1.2 semitones at index [3, 0]"
    silence = "onnx vs eager: pitch is NaN at 40 of 40 elements where eager is finite"
    summary = f"{silence}\n  pitch: NaN at [0, 0]"
    report.add({**cell, "input_name": "sweep"}, "fail", sweep, {"summary": sweep})
    report.add({**cell, "input_name": "silence"}, "fail", silence, {"summary": summary})
    row = report.rows()[0]
    assert row["reasons"] == [f"equivalence [sweep,silence]: sweep: {sweep}; silence: {silence}"]
    text = report.render_text(200)
    assert "silence: onnx vs eager: pitch is NaN" in text and "sweep: onnx vs eager: pitch max" in text
    inputs = json.loads(json.dumps(report.as_json()))["rows"][0]["suites"]["equivalence"]["inputs"]
    assert inputs["silence"]["detail"] == summary  # the whole verdict in the JSON
    assert "detail" not in inputs["sweep"]  # a one-line verdict has nothing more to keep
    # refuted: inputs with the same cause are read once
    same = ConformanceReport(tmp_path)
    for name in ("sweep", "silence"):
        same.add({**cell, "input_name": name}, "fail", sweep, {"summary": sweep})
    assert same.rows()[0]["reasons"] == [f"equivalence [sweep,silence]: {sweep}"]


def test_an_ordinary_one_line_error_stays_one_line():
    assert describe_exception(ValueError("the weights file is missing")) == (
        "ValueError",
        "the weights file is missing",
    )
    assert salient_lines("the weights file is missing\nsee the README for where to put it") == []
    one = ExportError.of("onnx", "toy", RuntimeError("the exporter does not support complex outputs"))
    assert (
        str(one)
        == "export-error: onnx could not export toy: RuntimeError: the exporter does not support complex outputs"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kind, line = describe_exception(KeyError("state.cache"))
    assert (kind, line) == ("KeyError", "'state.cache'")
