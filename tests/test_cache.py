"""The export cache: keyed, reused, and safe when xdist workers race for the same entry."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import harness
from harness.cache import ExportCache, cache_key


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
