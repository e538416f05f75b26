"""A user's file is judged by its own content, and every bad file is one clear error before
anything runs: the message names the user's file and what is wrong (issue: the gate tells the
truth about files it did not make)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import harness
from harness.run.external import ArtifactOverride, external_artifact
from harness.targets import ArtifactError

pytestmark = pytest.mark.filterwarnings("ignore")

TOYS = ("fixtures.toys",)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """The toy streaming case exported once to the formats users bring."""
    out = tmp_path_factory.mktemp("exports")
    case = harness.case("cached_conv")
    return {
        name: harness.target(name).export(case, out).path
        for name in ("onnx", "onnx-stateful", "executorch-portable", "torchscript", "torch-export")
    }


def _adopt(target: str, path: Path, work: Path, case: str = "cached_conv"):
    return external_artifact(ArtifactOverride(case, target, path), work)


def _copy_lifted(exports: dict[str, Path], folder: Path, name: str = "model.stateful.onnx") -> Path:
    """A user's copy of the lifted-state export: the file, its sidecar and its state."""
    folder.mkdir(parents=True, exist_ok=True)
    source = exports["onnx-stateful"]
    target = folder / name
    shutil.copyfile(source, target)
    sidecar = json.loads(source.with_name(source.name + ".json").read_text())
    sidecar["meta"]["state_file"] = name + ".state.npz"
    target.with_name(name + ".json").write_text(json.dumps(sidecar))
    shutil.copyfile(source.with_name(source.name + ".state.npz"), folder / (name + ".state.npz"))
    return target


def _error(target: str, path: Path, work: Path) -> str:
    with pytest.raises(ArtifactError) as info:
        _adopt(target, path, work)
    message = str(info.value)
    assert str(path.name) in message.split(":")[0] or str(path) in message, message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


def test_files_of_the_wrong_kind_are_named(exports, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "is a text file, not an ONNX model" in _error("onnx", text, tmp_path / "w")
    assert "artifact file is empty" in _error("onnx", empty, tmp_path / "w")
    assert "is a directory, not an artifact file" in _error("onnx", tmp_path, tmp_path / "w")
    assert "does not exist" in _error("onnx", tmp_path / "absent.onnx", tmp_path / "w")
    pte_as_onnx = tmp_path / "program.onnx"
    shutil.copyfile(exports["executorch-portable"], pte_as_onnx)
    assert "is an ExecuTorch program, not an ONNX model" in _error("onnx", pte_as_onnx, tmp_path / "w")
    onnx_as_pte = tmp_path / "model.pte"
    shutil.copyfile(exports["onnx"], onnx_as_pte)
    assert "not an ExecuTorch program" in _error("executorch-portable", onnx_as_pte, tmp_path / "w")
    pt2_as_ts = tmp_path / "model.ts.pt"
    shutil.copyfile(exports["torch-export"], pt2_as_ts)
    assert "is a torch.export archive, not a TorchScript archive" in _error(
        "torchscript", pt2_as_ts, tmp_path / "w"
    )


def test_corrupt_header_and_truncated_body_are_told_apart(exports, tmp_path):
    data = exports["executorch-portable"].read_bytes()
    assert data[8:12] == b"eh00"
    corrupt = bytearray(data)
    corrupt[16:24] = (2**62).to_bytes(8, "little")  # program size
    bad_header = tmp_path / "header.pte"
    bad_header.write_bytes(bytes(corrupt))
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(data[: len(data) // 2])
    assert "corrupt ExecuTorch extended header" in _error("executorch-portable", bad_header, tmp_path / "w")
    assert "truncated ExecuTorch program" in _error("executorch-portable", truncated, tmp_path / "w")
    torn = tmp_path / "torn.onnx"
    torn.write_bytes(exports["onnx"].read_bytes()[:300])
    assert "not an ONNX model" in _error("onnx", torn, tmp_path / "w")


@pytest.mark.parametrize(
    "sidecar, expected",
    [
        ("[1, 2]", "the sidecar must be a JSON object, got a list"),
        ('{"meta": {"state_file": 3}}', "meta.state_file must be a file name, got 3"),
        ('{"meta": []}', "'meta' must be an object, got a list"),
        ("{meta: 1}", "the artifact's sidecar is not valid JSON (Expecting property name"),
        ('{"meta": {"state_names": "pad"}}', "meta.state_names must be a list of strings"),
    ],
)
def test_sidecars_of_the_wrong_shape_are_one_clear_error(exports, tmp_path, sidecar, expected):
    path = _copy_lifted(exports, tmp_path / "user")
    path.with_name(path.name + ".json").write_text(sidecar)
    with pytest.raises(ArtifactError) as info:
        _adopt("onnx-stateful", path, tmp_path / "w")
    message = str(info.value)
    assert message.startswith(str(path.with_name(path.name + ".json"))) and expected in message, message


def _rewrite_state(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path.with_name(path.name + ".state.npz"), **arrays)


def test_state_files_that_do_not_fit_are_named(exports, tmp_path):
    path = _copy_lifted(exports, tmp_path / "user")
    (name,) = json.loads(path.with_name(path.name + ".json").read_text())["meta"]["state_names"]
    good = np.load(path.with_name(path.name + ".state.npz"))[name]
    state = path.with_name(path.name + ".state.npz")
    _rewrite_state(path, other=good)
    assert f"holds ['other'], the artifact's state is ['{name}']" in _error(
        "onnx-stateful", path, tmp_path / "w"
    )
    _rewrite_state(path, **{name: good[..., :-1]})
    assert "has shape" in _error("onnx-stateful", path, tmp_path / "w")
    _rewrite_state(path, **{name: good.astype(np.float64)})
    assert "is float64, the case's buffer is float32" in _error("onnx-stateful", path, tmp_path / "w")
    state.write_bytes(b"garbage")
    assert "not a readable .npz" in _error("onnx-stateful", path, tmp_path / "w")
    state.unlink()
    assert "initial-state file the sidecar names does not exist" in _error(
        "onnx-stateful", path, tmp_path / "w"
    )


def test_a_plain_export_given_as_lifted_state_is_named(exports, tmp_path):
    plain = tmp_path / "plain.onnx"
    shutil.copyfile(exports["onnx"], plain)
    refusal = _error("onnx-stateful", plain, tmp_path / "w")
    assert "a plain ONNX export? Give it for the onnx target" in refusal
    assert "check CASE --artifact onnx=PATH" in refusal and "--conformance-artifact=CASE:onnx=PATH" in refusal
    lifted_sidecar = exports["onnx-stateful"].with_name(exports["onnx-stateful"].name + ".json")
    plain.with_name(plain.name + ".json").write_text(lifted_sidecar.read_text())
    assert "the sidecar names state inputs/outputs the graph does not have" in _error(
        "onnx-stateful", plain, tmp_path / "w"
    )


def test_a_lifted_state_export_given_for_a_target_keeping_state_inside_is_named(exports, tmp_path):
    """The reverse: a lifted-state file (with its sidecar) given as plain onnx is refused at once,
    naming the file and the targets that take it, instead of an error in every cell."""
    lifted = _copy_lifted(exports, tmp_path / "mine")
    message = _error("onnx", lifted, tmp_path / "w")
    assert "carries the streaming state as inputs ['state.cache']" in message, message
    assert "onnx-stateful" in message, message


def test_two_files_with_one_name_never_share_an_entry(exports, tmp_path):
    """The seen failure: a second file with the same name was judged by the first one's copy."""
    import onnx
    from onnx import numpy_helper

    clean = _copy_lifted(exports, tmp_path / "a")
    changed = _copy_lifted(exports, tmp_path / "b")
    model = onnx.load(str(changed))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16).astype(np.float32), init.name))
    onnx.save(model, str(changed))
    work = tmp_path / "cache"
    first = _adopt("onnx-stateful", clean, work)
    second = _adopt("onnx-stateful", changed, work)
    assert first.path != second.path
    assert first.path.read_bytes() == clean.read_bytes()
    assert second.path.read_bytes() == changed.read_bytes()
    again = _adopt("onnx-stateful", clean, work)
    assert again.path == first.path  # the same content is the same entry
    # the state beside the file is part of its identity too
    (name,) = first.meta["state_names"]
    _rewrite_state(
        clean, **{name: np.ones_like(np.load(first.path.with_name(first.meta["state_file"]))[name])}
    )
    third = _adopt("onnx-stateful", clean, work)
    assert third.path != first.path
    assert np.load(third.path.with_name(third.meta["state_file"]))[name].min() == 1.0


def test_a_user_file_is_judged_strictly_and_the_baseline_is_not_consulted(inner_pytest, tmp_path, exports):
    """The seen failure: a plain ONNX export of a streaming model, given with --artifact, passed
    as 'xfailed' because the case's declared expected failures were applied to it."""
    plain = tmp_path / "mine.onnx"
    shutil.copyfile(exports["onnx"], plain)
    result = inner_pytest(
        f"--artifact=cached_conv:onnx={plain}",
        "--conformance-targets=onnx",
        "-k",
        "cached_conv and equivalence",
        modules=TOYS,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    text = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed", 0) == 0 and outcomes.get("failed", 0) >= 1, text
    assert "cells on your files did not pass" in text
    assert "baseline not consulted" in text


def test_a_sidecar_maps_a_publishers_state_names_to_the_case(exports, tmp_path, inner_pytest):
    """A lifted-state file whose state is named cache_in -> cache_out (not state.NAME /
    next_state.NAME): the sidecar beside it says which buffer each pair is, and it is gated."""
    import onnx

    model = onnx.load(str(exports["onnx-stateful"]))
    meta = json.loads(
        exports["onnx-stateful"].with_name(exports["onnx-stateful"].name + ".json").read_text()
    )["meta"]
    renames = {meta["state_inputs"][0]: "cache_in", meta["state_outputs"][0]: "cache_out"}
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    path = tmp_path / "published.onnx"
    onnx.save(model, str(path))
    without = _error("onnx-stateful", path, tmp_path / "w")
    assert "do not pair as state.NAME / next_state.NAME" in without and "sidecar" in without
    path.with_name(path.name + ".json").write_text(
        json.dumps(
            {
                "meta": {
                    "state_names": meta["state_names"],
                    "state_inputs": ["cache_in"],
                    "state_outputs": ["cache_out"],
                }
            }
        )
    )
    artifact = _adopt("onnx-stateful", path, tmp_path / "w")
    assert artifact.meta["state_inputs"] == ["cache_in"]
    result = inner_pytest(
        f"--artifact=cached_conv:onnx-stateful={path}",
        "--conformance-targets=onnx-stateful",
        "-k",
        "cached_conv and (equivalence or continuity)",
        modules=TOYS,
        suites=("test_outputs", "test_streaming"),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]


def test_the_sidecar_schema_and_the_validator_agree(exports, tmp_path):
    """docs/sidecar.schema.json is the documented format: the harness's own sidecars satisfy it,
    and the shapes it forbids are the ones the validator refuses."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "sidecar.schema.json").read_text())
    for path in exports.values():
        jsonschema.validate(json.loads(path.with_name(path.name + ".json").read_text()), schema)
    bad_inputs = (
        [1, 2],
        [{"name": "x", "dtype": "float32"}],
        [{"name": "x", "dtype": "float32", "shape": [10**12]}],
    )
    for bad in (
        [1, 2],
        {"meta": []},
        {"meta": {"state_file": 3}},
        {"meta": {"state_names": "pad"}},
        *({"meta": {"inputs": inputs}} for inputs in bad_inputs),
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_external_data_travels_with_the_model_and_its_absence_is_named(exports, tmp_path):
    import onnx

    model = onnx.load(str(exports["onnx"]))
    folder = tmp_path / "big"
    folder.mkdir()
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    artifact = _adopt("onnx", path, tmp_path / "w")
    assert (artifact.path.parent / "model.onnx.data").read_bytes() == (
        folder / "model.onnx.data"
    ).read_bytes()
    with harness.target("onnx").load(artifact) as runner:
        runner.run(*harness.case("cached_conv").example_inputs())
    (folder / "model.onnx.data").unlink()
    assert "external data files that are not beside it: ['model.onnx.data']" in _error(
        "onnx", path, tmp_path / "w"
    )


def test_failing_cells_on_a_user_file_name_where_it_leaves_eager(inner_pytest, tmp_path, exports):
    """The plain ONNX file drops the cached convolution's state: the equivalence, continuity and
    hypothesis failures each name the first diverging module and point at the state."""
    plain = tmp_path / "mine.onnx"
    shutil.copyfile(exports["onnx"], plain)
    result = inner_pytest(
        f"--artifact=cached_conv:onnx={plain}",
        "--conformance-targets=onnx",
        "-k",
        "cached_conv and (equivalence or continuity or hypothesis)",
        f"--conformance-report={tmp_path / 'report'}",
        modules=TOYS,
        suites=("test_outputs", "test_streaming", "test_inputs"),
    )
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    headline = "first divergence: conv (Conv1d, torch/nn/modules/conv.py:"
    lines = text.splitlines()
    for suite in ("equivalence", "stream-continuity", "hypothesis"):
        # the terminal wraps a reason under its first line, indented further
        start = next(
            i for i, line in enumerate(lines) if line.strip().startswith(f"cached_conv/onnx: {suite} ")
        )
        indent = len(lines[start]) - len(lines[start].lstrip())
        entry = [lines[start].strip()]
        for more in lines[start + 1 :]:
            if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                break
            entry.append(more.strip())
        assert headline in " ".join(entry), entry
    assert "reads the streaming state cache" in text
    # the localised hypothesis failure keeps hypothesis's own notes: the example in one line, the blob
    assert re.search(r"calls=<\d+ calls of \(\([\d, ]+\) float32\), peak \|x\| [\d.e+-]+>", text), text
    assert "@reproduce_failure(" in text
    located = json.loads((tmp_path / "report" / "conformance.json").read_text())["localizations"]
    assert located["cached_conv/onnx/noise_stream"]["first_divergence"]["module"] == "conv", located.keys()
    page = (tmp_path / "report" / "conformance.html").read_text()
    assert "Where failing cells leave eager" in page and "first divergence: conv (Conv1d" in page
    # every report names the file that was judged, with its digest (CI evidence of what passed)
    import hashlib

    digest = hashlib.sha256(plain.read_bytes()).hexdigest()[:16]
    rows = json.loads((tmp_path / "report" / "conformance.json").read_text())["rows"]
    (row,) = [r for r in rows if (r["case"], r["target"]) == ("cached_conv", "onnx")]
    assert row["artifact"] == {"path": str(plain), "sha256": digest}, row.get("artifact")
    assert (
        f"your file (--artifact): {plain} (sha256 {digest})"
        in (tmp_path / "report" / "conformance.md").read_text()
    )
    assert f"your file: {plain}" in page
    assert f"cached_conv/onnx: {plain} (sha256 {digest})" in " ".join(text.split())  # wrapped to the width
