"""The input space: every planted fault is reported with its diagnosis."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

import harness
from harness import ModelCase, tol
from harness.checks.input_space import check_dynamic_shapes, check_generated_input
from harness.core.branches import BranchRecorder, discover_branches
from harness.plugin.profiles import run_property
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.run.evidence import run_example
from harness.strategies import audio, audio_stream, images, tokens
from harness.targets import Artifact

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("target_name", ["torchscript", "onnx-legacy"])
def test_traced_branch_is_reported_as_baked_with_its_source_line(export_cache, target_name):
    case = harness.case("branchy")
    module = case.build()
    branches = discover_branches(module, case.example_inputs())
    loud = [(torch.randn(4, 16, generator=torch.Generator().manual_seed(5)) * 3.0,)]
    target = harness.target(target_name)
    with target.load(export_cache.get(case, target)) as runner:
        evidence = evidence_for(
            "hypothesis", target, runner, eager_reference(case, module=module, branches=branches)
        )
        result = check_generated_input(evidence, run_example(runner, case, loud))
    assert not result
    assert result.diagnosis.startswith(
        "branch baked: the export always takes the false side of `if x.abs().mean() > 0.5:`"
    )
    assert "fixtures/toys.py:" in result.diagnosis and "this input takes the true side" in result.diagnosis


def test_dynamo_based_exports_refuse_the_branch_instead(export_cache):
    case = harness.case("branchy")
    with pytest.raises(harness.ExportError, match="GuardOnDataDependentSymNode"):
        export_cache.get(case, harness.target("onnx"))


def test_shape_specialised_export_is_reported(tmp_path):
    case = harness.case("conv_mlp")
    module = case.build()
    path = tmp_path / "static.pt2"
    # the planted fault: exported without the case's dynamic batch dimension
    torch.export.save(torch.export.export(module, case.example_inputs(), strict=False), str(path))
    artifact = Artifact(path, "torch-export", case.name, case.input_names, case.output_names)
    target = harness.target("torch-export")
    with target.load(artifact) as runner:
        eager = eager_reference(case, [tuple(case.example_inputs())], module=module)
        result = check_dynamic_shapes(evidence_for("dynamic-shapes", target, runner, eager))
    assert not result
    assert result.diagnosis.startswith(
        "shape specialised: the export rejects signal dimension 0 = 1 (the example has 2)"
    )


def test_the_real_dynamic_export_accepts_every_size(export_cache):
    case = harness.case("conv_mlp")
    target = harness.target("torch-export")
    with target.load(export_cache.get(case, target)) as runner:
        eager = eager_reference(case, [tuple(case.example_inputs())])
        result = check_dynamic_shapes(evidence_for("dynamic-shapes", target, runner, eager))
    assert result, result.report()
    assert "signal[0]=1" in result.diagnosis and "signal[0]=16" in result.diagnosis


def test_a_branch_side_the_strategy_cannot_reach_fails_coverage(inner_pytest):
    planted = """
import torch
from hypothesis import strategies as st
from harness import ModelCase, register

class Gate(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 1000.0:
            return x * 2.0
        return x - 1.0

register(ModelCase(
    name="gate", build=lambda: Gate().eval(), example_inputs=lambda: (torch.zeros(3),),
    input_names=("x",), output_names=("y",), inputs={"zeros": lambda: [(torch.zeros(3),)]},
    # the planted fault: values in [0, 1] never sum past 1000
    strategy=lambda: st.lists(st.floats(0, 1), min_size=3, max_size=3).map(lambda v: [(torch.tensor(v),)]),
))
"""
    result = inner_pytest("-k", "coverage", cases=planted, suites=("test_inputs",))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "never exercised by the generated inputs: the true side of `if x.sum() > 1000.0:`" in out
    assert "planted_cases.py:" in out


def test_branch_coverage_judges_the_models_own_branches_under_any_profile(inner_pytest):
    """torch's own shape checks inside nn.LSTM and GroupNorm convert tensors to bools too: they are
    not the model's branches. The search runs without a deadline under a project's own profile
    (here 20 ms, which every call of this model outlasts)."""
    planted = """
import time
import torch
from hypothesis import strategies as st
from harness import ModelCase, register

class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = torch.nn.LSTM(4, 4, batch_first=True)
        self.norm = torch.nn.GroupNorm(2, 4)

    def forward(self, x):
        time.sleep(0.03)
        y, _ = self.lstm(x)
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        if x.mean() > 0:
            return y * 2.0
        return y

register(ModelCase(
    name="tagger", build=lambda: Tagger().eval(), example_inputs=lambda: (torch.zeros(1, 5, 4),),
    input_names=("x",), output_names=("y",), inputs={"zeros": lambda: [(torch.zeros(1, 5, 4),)]},
    strategy=lambda: st.sampled_from([-0.5, 0.5]).map(lambda v: [(torch.full((1, 5, 4), v),)]),
))
"""
    conftest = "from hypothesis import settings\n\nsettings.register_profile('theirs', max_examples=8, deadline=20)\n"
    result = inner_pytest(
        "-k",
        "coverage",
        "--hypothesis-profile=theirs",
        cases=planted,
        conftest=conftest,
        suites=("test_inputs",),
    )
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    assert "DeadlineExceeded" not in out and "Flaky" not in out
    assert "if x.mean() > 0:" in out, out[-3000:]
    assert "rnn.py" not in out and "functional.py" not in out, out[-3000:]


def test_library_files_are_told_from_the_models():
    import torch.nn.modules.rnn as rnn

    from harness.core.branches import in_library

    assert in_library(rnn.__file__) and in_library(torch.nn.functional.__file__)
    assert not in_library(__file__)


def test_recorder_counts_both_sides():
    case = harness.case("branchy")
    module = case.build()
    recorder = BranchRecorder(discover_branches(module, case.example_inputs()))
    with recorder.watch():
        module(torch.zeros(4, 16))
        module(torch.full((4, 16), 2.0))
    assert recorder.unreached() == []
    assert "true x1, false x1" in recorder.summary()


def test_a_failure_found_once_is_replayed_first_by_the_deterministic_profile(tmp_path):
    seen: list[int] = []

    def body(n: int) -> None:
        seen.append(n)
        assert n < 500

    database = str(tmp_path / "db")
    base = settings(database=None, deadline=None, max_examples=200)
    dev = settings(base, database=DirectoryBasedExampleDatabase(database))  # random, shrinks, saves
    with _profile(dev), pytest.raises(AssertionError):
        run_property(st.integers(0, 1000), body, database_key="cell-1", database_path=database)
    shrunk = seen[-1]
    seen.clear()
    ci = settings(base, derandomize=True, phases=(Phase.explicit, Phase.generate), max_examples=1)
    with _profile(ci), pytest.raises(AssertionError):
        run_property(st.integers(0, 1000), body, database_key="cell-1", database_path=database)
    assert seen[0] >= 500 and seen[0] == shrunk  # the replay pass ran the saved failure first


def test_the_deterministic_profile_draws_by_key_not_by_the_suites_source(tmp_path):
    """Editing the suite's code must not change which inputs CI judges (declared expected
    failures would turn into passes); two targets of one case see the same inputs."""
    first: list[int] = []
    second: list[int] = []
    other: list[int] = []

    def record_first(n: int) -> None:
        first.append(n)

    def record_second(n: int) -> None:  # another body: other source, other name
        second.append(int(n))

    def record_other(n: int) -> None:
        other.append(n)

    database = str(tmp_path / "db")
    ci = settings(database=None, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate))
    runs = [(record_first, "a", "case/generated"), (record_second, "b", "case/generated")]
    runs.append((record_other, "c", "other/generated"))
    with _profile(ci):
        for body, database_key, generation_key in runs:
            run_property(
                st.integers(0, 10**9),
                body,
                database_key=database_key,
                generation_key=generation_key,
                database_path=database,
            )
    assert first == second and len(first) > 3
    assert other != first


class _profile:
    """Make ``settings()`` return these settings inside the block (as a loaded profile does)."""

    def __init__(self, active: settings) -> None:
        self.active = active

    def __enter__(self) -> None:
        settings.register_profile("conformance-self-test", self.active)
        self.previous = settings._current_profile
        settings.load_profile("conformance-self-test")

    def __exit__(self, *exc: object) -> None:
        settings.load_profile(self.previous)


def test_strategies_check_their_arguments():
    with pytest.raises(ValueError, match="min_length <= max_length"):
        audio(min_length=10, max_length=5, sample_rate=16000)
    with pytest.raises(ValueError, match="Nyquist"):
        audio(min_length=1, max_length=5, sample_rate=16000, freq_range=(100.0, 9000.0))
    with pytest.raises(ValueError, match="unknown kinds"):
        audio(min_length=1, max_length=5, sample_rate=16000, kinds=("hum",))
    with pytest.raises(ValueError, match="bad length"):
        tokens(vocab=10, length=(5, 2))
    with pytest.raises(ValueError, match="bad shape"):
        images(height=0, width=4)
    stream = audio_stream(chunk=160, min_chunks=2, max_chunks=3, sample_rate=16000).example()
    assert 2 <= len(stream) <= 3 and stream[0][0].shape == (1, 160)


def test_dynamic_dims_naming_an_unknown_input_are_rejected():
    case = ModelCase(
        name="bad_dims",
        build=lambda: torch.nn.Identity().eval(),
        example_inputs=lambda: (torch.zeros(1),),
        input_names=("x",),
        output_names=("y",),
        inputs={"z": lambda: [(torch.zeros(1),)]},
        tolerance={"default": tol(0.0)},
        dynamic_dims={"xx": {0: (1, 4)}, "x": {0: (0, 4)}},
    )
    problems = "\n".join(case.check_declarations([t.name for t in harness.targets()]))
    assert "dynamic_dims names unknown input 'xx'" in problems and "need 1 <= min <= max" in problems


def test_a_generated_input_outside_the_cases_own_shapes_is_the_cases_error(export_cache):
    """Found from outside: a strategy that generates a batch the case never declared made every
    exact target 'fail' (the export rightly rejected it). It is the case's error, named; an input
    within the declared shapes is still judged."""
    from harness.core.errors import HarnessError

    case = harness.case("conv_mlp")  # declares a dynamic batch 1-16, length 64 fixed
    target = harness.target("torch-export")
    with target.load(export_cache.get(case, target)) as runner:
        evidence = evidence_for("hypothesis", target, runner, eager_reference(case))
        outside = run_example(runner, case, [(torch.zeros(20, 1, 64),)])  # batch 20 > 16
        with pytest.raises(
            HarnessError, match="its strategy generated an input outside the shapes it declares"
        ):
            check_generated_input(evidence, outside)
        assert check_generated_input(evidence, run_example(runner, case, [(torch.zeros(3, 1, 64),)]))
