"""Quantized targets are judged by the task metric; benchmark figures become honest ratios."""

from __future__ import annotations

import pytest

import harness
from harness.checks.equivalence import check_equivalence
from harness.core.judge import Judge
from harness.plugin.suites import evidence_for
from harness.reports.benchmarks import benchmark_table, flops_per_call
from harness.run.eager import eager_reference

pytestmark = pytest.mark.filterwarnings("ignore")


def test_quantized_pesto_passes_on_the_metric_while_tensors_differ(export_cache):
    case = harness.case("pesto")
    target = harness.target("onnx-int8")
    calls = list(case.inputs["a_major_scale"]())
    assert target.approximate  # judged by the task metric, as the cell is
    with target.load(export_cache.get(case, target)) as runner:
        result = check_equivalence(evidence_for("equivalence", target, runner, eager_reference(case, calls)))
    assert result, result.report()
    assert any(not c for c in result.comparisons)  # int8 is not tensor-exact: the metric decides
    # judged by the tail: no voiced frame more than 50 cents from eager (raw pitch accuracy 1.0)
    assert (
        result.metric.name.startswith("voiced frames more than 50 cents off") and result.metric.value == 0.0
    )
    assert result.metric.figures["rpa"] == 1.0


def test_an_approximate_target_that_drops_state_fails_its_metric(export_cache):
    case = harness.case("pesto")
    calls = list(case.inputs["pitch_sweep"]())
    target = harness.target("onnx")  # drops the state; judged as an approximate target is
    judge = Judge.for_cell(case, target, approximate=True)
    with target.load(export_cache.get(case, target)) as runner:
        result = check_equivalence(
            evidence_for("equivalence", target, runner, eager_reference(case, calls), judge=judge)
        )
    assert not result
    assert "voiced frames more than 50 cents off (1 - raw pitch accuracy): OVER THRESHOLD" in result.summary()


def test_cases_without_an_approximate_metric_are_refused():
    case = harness.case("conv_mlp")
    outputs = {"logits": case.build()(*case.example_inputs()).detach().numpy()}
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="no approximate_metric"):  # the case's error, never a verdict
        Judge.for_cell(case, harness.target("onnx-int8")).judge(outputs, outputs, what="onnx-int8 vs eager")


def test_flops_are_counted_on_eager_and_state_is_restored():
    case = harness.case("cached_conv")
    module = case.build()
    flops = flops_per_call(case, module, case.example_inputs())
    assert flops == 2 * 4 * 1 * 5 * 32  # conv1d: 2 * out_channels * in_channels * kernel * frames
    assert float(module.cache.abs().sum()) == 0.0


def test_benchmark_table_takes_ratios_against_eager_of_the_same_run():
    records = [
        {
            "case": "m",
            "target": "eager",
            "step_s": 0.004,
            "flops": 4e6,
            "peak_gflops": 10.0,
            "size_bytes": 8e6,
            "chunk_seconds": 0.01,
            "streaming": True,
        },
        {
            "case": "m",
            "target": "onnx",
            "step_s": 0.002,
            "flops": 4e6,
            "peak_gflops": 10.0,
            "size_bytes": 8e6,
            "chunk_seconds": 0.01,
            "streaming": True,
        },
        {
            "case": "m",
            "target": "onnx-int8",
            "step_s": 0.001,
            "flops": 4e6,
            "peak_gflops": 10.0,
            "size_bytes": 2e6,
            "chunk_seconds": 0.01,
            "float_counterpart": "onnx",
            "streaming": True,
        },
        {"case": "m", "target": "onnx", "cold_s": 0.05},
    ]
    table = "\n".join(benchmark_table(records))
    assert "| onnx | 2.000 | 2.00x | 0.2000 | 50.0 | 8.00 | - | - | 2.00 | 20.0 |" in table
    assert "| onnx-int8 | 1.000 | 4.00x | 0.1000 | - | 2.00 | 0.25 | 2.00 | 4.00 | 40.0 |" in table


@pytest.mark.slow
def test_dynamic_int8_that_depends_on_the_batch_is_named(export_cache):
    """onnxruntime's dynamic int8 computes activation scales over the whole batch; a metric strict
    enough to see it (0.001 on the logits) reports the batch dependence with that diagnosis."""
    import dataclasses

    from harness import Metric
    from harness.checks.equivalence import check_batch_consistency

    case = harness.case("efficientnet_b0")
    strict = dataclasses.replace(
        case,
        approximate_metric=Metric(
            "largest logit change",
            "logit",
            lambda e, a: float(abs(e["logits"] - a["logits"]).max()),
            threshold=1e-3,
        ),
    )
    target = harness.target("onnx-int8")

    def batch_consistency(judged_case):
        eager = eager_reference(dataclasses.replace(judged_case, batch_consistency=8), case.inputs["noise"]())
        with target.load(export_cache.get(case, target)) as runner:
            return check_batch_consistency(evidence_for("batch-consistency", target, runner, eager))

    result = batch_consistency(strict)
    judged_by_labels = batch_consistency(case)
    assert not result
    assert "differs between batch 8 and batch 1: largest logit change: OVER THRESHOLD" in result.diagnosis
    assert "activation scales computed over the whole batch" in result.diagnosis
    assert judged_by_labels, judged_by_labels.summary()
