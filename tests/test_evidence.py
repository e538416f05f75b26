"""Checks are functions of declared evidence: one path for the suites and the self-tests, the
least work read from the same declarations, one place a cell's record is made."""

from __future__ import annotations

import ast
import dataclasses

import pytest
import torch

from harness.checks.streaming import check_batch_isolation, check_continuity
from harness.cli.overhead import target_work, work_plan
from harness.core.case import ModelCase, StreamingSpec
from harness.core.errors import HarnessError
from harness.plugin import suites as suite_module
from harness.plugin.cell_record import CellRecord
from harness.plugin.suites import SUITE_REGISTRY, evidence_for
from harness.run.eager import eager_reference
from harness.run.evidence import Need, target_feeds
from harness.targets import target
from tests.conftest import REPO_ROOT

HARNESS = REPO_ROOT / "harness"


class Counter(torch.nn.Module):
    """A streaming toy: adds a running sum of its input to every chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("total", torch.zeros(2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total.add_(x.sum(dim=-1, keepdim=True))
        return x + self.total


def _case() -> ModelCase:
    torch.manual_seed(0)
    chunks = [torch.randn(2, 1, 8) for _ in range(4)]
    return ModelCase(
        name="evidence_counter",
        build=lambda: Counter().eval(),
        example_inputs=lambda: (chunks[0],),
        input_names=("x",),
        output_names=("y",),
        inputs={"stream": lambda: [(c,) for c in chunks]},
        streaming=StreamingSpec(chunk=8, output_time_axis=-1, batch_rows=2),
    )


def test_a_check_reads_only_what_its_suite_declares(tmp_path):
    case = _case()
    exported = target("torch-export")  # carries the buffer state
    artifact = exported.export(case, tmp_path)
    with exported.load(artifact) as runner:
        evidence = evidence_for("stream-continuity", exported, runner, eager_reference(case))
        assert check_continuity(evidence)
        assert evidence.declared == SUITE_REGISTRY["stream-continuity"].evidence
        with pytest.raises(HarnessError, match="does not declare"):
            check_batch_isolation(evidence)  # altered rows were not declared, so never run
    with exported.load(artifact) as runner:
        assert check_batch_isolation(evidence_for("stream-batch", exported, runner, eager_reference(case)))


def test_the_least_work_follows_what_the_suites_declare(monkeypatch):
    case = _case()

    plan = work_plan(case, target("eager"), tier="nightly")
    needs = plan[case.main_input]
    assert Need.ALTERED_ROWS in needs and Need.REPLAY in needs
    feeds = target_work(case, plan, {"stream": list(case.inputs["stream"]())}, [], {})
    labels = [label for label, _ in feeds]
    assert labels.count("altered_rows") == 1 and labels.count("replay") == 1
    assert feeds[0] == ("stream", list(case.inputs["stream"]()))
    # a suite that stops declaring a run takes it out of the least work
    changed = dict(SUITE_REGISTRY)
    changed["stream-batch"] = dataclasses.replace(
        changed["stream-batch"], evidence=frozenset({Need.CANONICAL})
    )
    monkeypatch.setattr(suite_module, "SUITE_REGISTRY", changed)
    monkeypatch.setattr("harness.cli.overhead.SUITE_REGISTRY", changed)
    later = target_work(
        case, work_plan(case, target("eager"), tier="nightly"), {"stream": feeds[0][1]}, [], {}
    )
    assert "altered_rows" not in [label for label, _ in later]
    assert len(later) == len(feeds) - 1


def test_what_a_need_feeds_has_one_owner():
    case = _case()
    calls = list(case.inputs["stream"]())
    (altered,) = target_feeds(Need.ALTERED_ROWS, case, calls)
    assert torch.equal(altered[0][0][0], calls[0][0][0]) and not torch.equal(altered[0][0][1], calls[0][0][1])
    assert target_feeds(Need.CANONICAL, case, calls) == []
    assert target_feeds(Need.REPLAY, case, calls) == [calls]


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


#: where a target is judged: inside these layers it is always a Target (names are for the edges:
#: the CLI, markers, case declarations keyed by target name, reports)
JUDGING_LAYERS = ("checks", "run", "plugin", "cli")


def test_no_function_takes_a_target_as_an_object_or_a_name():
    found = []
    for path in sorted(_harness_files()):
        layer = path.relative_to(HARNESS).parts[0]
        for function in _functions(ast.parse(path.read_text())):
            arguments = function.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                where = f"{path.relative_to(REPO_ROOT)}:{function.lineno} {function.name}({arg.arg}: {annotation})"
                if arg.arg == "target" and "object" in annotation:
                    found.append(where)
                elif layer in JUDGING_LAYERS and (
                    arg.arg == "target_name" or (arg.arg == "target" and annotation in ("str", "Any", ""))
                ):
                    found.append(where)
    assert not found, "functions that take a target by name or as an object:\n" + "\n".join(found)


def _harness_files():
    return HARNESS.rglob("*.py")


def test_a_cell_record_is_made_in_one_place_and_never_changed():
    made = []
    for path in sorted(HARNESS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("CellRecord", "cls"):
                if ast.unparse(node.func) == "cls" and path.name != "cell_record.py":
                    continue
                made.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    # record_of makes it; from_dict reads one back on the controller (what xdist carried)
    assert made == ["harness/plugin/cell_context.py:" + made[0].split(":")[1], made[1]], made
    assert made[1].startswith("harness/plugin/cell_record.py")
    record = CellRecord("c", "t", "i", "s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.summary = "x"  # type: ignore[misc]
