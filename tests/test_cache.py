"""The export cache: keyed, reused, and safe when xdist workers race for the same entry."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import harness
from harness.run.cache import ExportCache, cache_key


def _export_in_worker(root: str) -> tuple[int, str]:
    import fixtures.toys  # noqa: F401  (registers the toy cases in the spawned process)
    import harness as h

    cache = ExportCache(Path(root))
    artifact = cache.get(h.case("conv_mlp"), h.target("torchscript"))
    return cache.exports_done, str(artifact.path)


def test_concurrent_workers_export_once_and_share_the_artifact(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.map(_export_in_worker, [str(tmp_path)] * 2)
    assert sum(done for done, _ in results) == 1
    paths = {path for _, path in results}
    assert len(paths) == 1 and Path(paths.pop()).is_file()
    leftovers = [p.name for p in (tmp_path / "conv_mlp").iterdir() if p.name.startswith(".staging")]
    assert leftovers == []


def test_key_changes_with_the_target_and_the_case(tmp_path):
    mlp, conv = harness.case("conv_mlp"), harness.case("cached_conv")
    onnx, ts = harness.target("onnx"), harness.target("torchscript")
    keys = {cache_key(mlp, onnx), cache_key(mlp, ts), cache_key(conv, onnx)}
    assert len(keys) == 3
    assert cache_key(mlp, onnx) == cache_key(mlp, onnx)


def test_export_errors_are_cached_too(tmp_path):
    cache = ExportCache(tmp_path)
    branchy, target = harness.case("branchy"), harness.target("torch-export")
    for _ in range(2):
        try:
            cache.get(branchy, target)
        except harness.ExportError as exc:
            assert "GuardOnDataDependentSymNode" in exc.exc_type
        else:
            raise AssertionError("torch.export accepted a data-dependent branch")
    assert cache.exports_done == 1


USER_TARGET = """
import torch
from harness.targets.torch_targets import TorchScriptTarget


class MyTraceTarget(TorchScriptTarget):
    name = "my-trace"
    suffix = ".mine.pt"
    description = "a user's TorchScript variant"
    SCALE = {scale}
"""


def _user_target(tmp_path: Path, scale: float, monkeypatch):
    import importlib
    import sys

    (tmp_path / "user_targets.py").write_text(USER_TARGET.format(scale=scale))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_targets", None)
    importlib.invalidate_caches()
    return importlib.import_module("user_targets").MyTraceTarget()


def test_a_users_target_outside_the_package_re_exports_when_its_code_changes(tmp_path, monkeypatch):
    case = harness.case("conv_mlp")
    before = cache_key(case, _user_target(tmp_path, 1.0, monkeypatch))
    same = cache_key(case, _user_target(tmp_path, 1.0, monkeypatch))
    after = cache_key(case, _user_target(tmp_path, 2.0, monkeypatch))
    assert before == same and before != after


def test_a_killed_exports_staging_folder_is_removed(tmp_path):
    import os
    import time

    cache = ExportCache(tmp_path)
    abandoned = tmp_path / "conv_mlp" / ".staging-killed"
    abandoned.mkdir(parents=True)
    old = time.time() - 2 * ExportCache.STAGING_ABANDONED_S
    os.utime(abandoned, (old, old))
    recent = tmp_path / "conv_mlp" / ".staging-running"
    recent.mkdir()
    cache.get(harness.case("conv_mlp"), harness.target("torchscript"))
    assert not abandoned.exists() and recent.exists()  # another worker's export may still be running


def test_an_entry_changed_out_of_band_is_rebuilt_never_judged(tmp_path):
    """Entries carry the sha256 of their files: a cached export edited by hand (or half restored)
    is exported again, and every target's entry reads back intact (no runner writes into it)."""
    import json

    case = harness.case("conv_mlp")
    for name in ("torchscript", "onnx", "onnx-stateful", "executorch-portable", "openvino"):
        target = harness.target(name)
        if target.missing_runtime():
            continue
        first = ExportCache(tmp_path)
        artifact = first.get(case, target)
        with target.load(artifact) as runner:  # loading and running leave the entry as published
            runner.run(*case.example_inputs())
        assert ExportCache(tmp_path).get(case, target).path == artifact.path
        reread = ExportCache(tmp_path)
        reread.get(case, target)
        assert reread.exports_done == 0, f"{name}: an intact entry was exported again"
    target = harness.target("torchscript")
    artifact = ExportCache(tmp_path).get(case, target)
    original = artifact.path.read_bytes()
    tampered = original[:-64] + bytes(64)
    artifact.path.write_bytes(tampered)  # changed out of band
    entry = artifact.path.parent
    assert "contents" in json.loads((entry / "result.json").read_text())
    later = ExportCache(tmp_path)
    again = later.get(case, target)
    assert later.exports_done == 1 and again.path.read_bytes() != tampered
    with target.load(again) as runner:
        runner.run(*case.example_inputs())
