"""What a device does with a bundle, using only numpy, onnx's TensorProto files and the runtime
(no harness, no torch model): run as a separate process by tests/test_device.py.

    python device_script.py record BUNDLE [--npz]   write BUNDLE/outputs/ (what judge reads)
    python device_script.py verify BUNDLE           compare with the bundled outputs, as
                                                    onnx_test_runner does: exit 0 or 1
    python device_script.py bundled BUNDLE          ExecuTorch's own BundledProgram verification

Each input's sets run in order on one freshly loaded model (an ExecuTorch method keeps its
buffers between calls); an ONNX set is fed every graph input its folder holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def _read(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def _streams(manifest: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for entry in sorted(manifest["sets"], key=lambda s: (s["input"], s["call"])):
        found.setdefault(entry["input"], []).append(entry)
    return found


def _runs(root: Path):
    """(set folder, outputs) for every set, each input's sets in order on a fresh model."""
    manifest = json.loads((root / "manifest.json").read_text())
    model = root / manifest["model"]
    inputs = manifest["graph_inputs"]
    if model.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        for entries in _streams(manifest).values():
            for entry in entries:
                feed = {
                    name: _read(root / entry["folder"] / f"input_{k}.pb") for k, name in enumerate(inputs)
                }
                yield entry["folder"], session.run(manifest["graph_outputs"], feed)
    else:
        import torch
        from executorch.runtime import Runtime

        data = model.read_bytes()
        for entries in _streams(manifest).values():
            method = Runtime.get().load_program(data).load_method("forward")
            for entry in entries:
                feed = [
                    torch.from_numpy(_read(root / entry["folder"] / f"input_{k}.pb"))
                    for k in range(len(inputs))
                ]
                yield entry["folder"], [o.numpy() for o in method.execute(feed)]


def record(root: Path, npz: bool) -> int:
    manifest = json.loads((root / "manifest.json").read_text())
    names = manifest["graph_outputs"]
    for folder, outputs in _runs(root):
        if npz:
            (root / "outputs").mkdir(exist_ok=True)
            np.savez(root / "outputs" / f"{folder}.npz", **dict(zip(names, outputs)))
        else:
            out = root / "outputs" / folder
            out.mkdir(parents=True)
            for k, (name, value) in enumerate(zip(names, outputs)):
                tensor = numpy_helper.from_array(np.ascontiguousarray(value), name=name)
                (out / f"output_{k}.pb").write_bytes(tensor.SerializeToString())
    return 0


def verify(root: Path) -> int:
    """Each set's outputs against the bundled ones at each output's tolerance (the manifest's)."""
    manifest = json.loads((root / "manifest.json").read_text())
    tolerances = manifest["tolerances"]
    failed = 0
    for folder, outputs in _runs(root):
        for k, (name, value) in enumerate(zip(manifest["graph_outputs"], outputs)):
            expected = _read(root / folder / f"output_{k}.pb")
            if not np.allclose(value, expected, equal_nan=True, **tolerances[name]):
                failed += 1
                print(f"{folder}/output_{k}.pb: max abs diff {np.nanmax(np.abs(value - expected)):.3g}")
    print(f"{failed} outputs differ")
    return 1 if failed else 0


def bundled(root: Path) -> int:
    """ExecuTorch's own verification of each input's BundledProgram, its cases in order on one
    loaded method, at the one tolerance the manifest gives for such a check."""
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    manifest = json.loads((root / "manifest.json").read_text())
    rtol, atol = manifest["one_tolerance"]["rtol"], manifest["one_tolerance"]["atol"]
    verified = 0
    for name, file in manifest["bundled_programs"].items():
        bundle = _load_bundled_program_from_buffer((root / file).read_bytes())  # one method: cases in order
        for index in range(sum(1 for s in manifest["sets"] if s["input"] == name)):
            try:
                bundle.verify_result_with_bundled_expected_output("forward", index, rtol, atol)
            except RuntimeError as exc:
                print(f"{file}: test case {index}: {exc}")
                return 1
            verified += 1
    print(f"{verified} test cases verified")
    return 0


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "record":
        sys.exit(record(folder, "--npz" in sys.argv))
    sys.exit({"verify": verify, "bundled": bundled}[command](folder))
