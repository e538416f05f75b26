"""A failing cell as a reproducer a runtime's maintainers can run: no harness, no case code.

:func:`write_repro` runs the case on eager and the target's artifact from its initial state over
one input, keeps the calls up to the first whose outputs leave the case's tolerances (a stream's
divergence needs the calls before it, and no more), and writes into a folder:

- ``repro.py``: the target's standalone program (``harness/targets/standalone/<runtime>.py``)
  joined with the driver (``driver.py``), as text: it imports numpy and the runtime only, feeds
  the recorded calls in order, compares with eager's recorded outputs under the case's
  tolerances and prints the first divergence (exit 1; 0 where every call agrees);
- ``inputs.npz``, ``expected.npz`` (and ``judged.npz`` where an output is judged only in part,
  PESTO's pitch on voiced frames), ``repro.json`` (names, tolerances, explicit and lifted state);
- the artifact and the files it needs under ``artifact/`` (or, above :data:`COPY_LIMIT_BYTES`,
  its path and sha256);
- ``README.md``: what diverges, how to run it, the versions it was recorded with;
- where localisation names the first divergent module, that module reduced
  (:mod:`harness.reports.repro_module`): its eager side as a torch.export program on its recorded
  inputs (``model.py``) and, for ONNX, the subgraph cut at its boundary.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.case import Calls, ModelCase
from ..core.errors import HarnessError
from ..core.judge import Judge
from ..core.pristine import built, fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..run.eager import run_module
from ..targets import Artifact, Target
from ..targets.artifact import read_initial_state
from ..targets.base import to_numpy
from .repro_module import write_module_repro

__all__ = ["COPY_LIMIT_BYTES", "Repro", "ReproUnsupported", "repro_folder_name", "write_repro"]

#: Artifacts up to this size are copied into the reproducer; larger ones are named by path and digest.
COPY_LIMIT_BYTES = 256 << 20

STANDALONE = Path(__file__).resolve().parent.parent / "targets" / "standalone"


class ReproUnsupported(HarnessError):
    """No reproducer can be written for this target (its runtime has no standalone program)."""


@dataclass(frozen=True)
class Repro:
    """What was written, and what the harness saw on the recorded calls."""

    folder: Path
    calls: int
    #: the first diverging call (None: the outputs agree on every recorded call)
    first: int | None
    output: str | None = None
    detail: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def command(self) -> str:
        return f"python {self.folder / 'repro.py'}"

    def headline(self) -> str:
        if self.first is None:
            return f"reproducer: {self.folder} ({self.calls} calls; no divergence on them)"
        return (
            f"reproducer: {self.folder}: {self.calls} calls, first divergence at call {self.first} "
            f"({self.output}); run: {self.command}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "calls": self.calls,
            "first_divergent_call": self.first,
            "output": self.output,
            "detail": self.detail,
            "command": self.command,
            "notes": list(self.notes),
        }


def repro_folder_name(case: str, target: str, input_name: str, suite: str | None = None) -> str:
    """``case-target-input[-suite]``, safe as one path component."""
    parts = [case, target, input_name] + ([suite] if suite else [])
    return "-".join("".join(c if c.isalnum() or c in "._" else "_" for c in p) for p in parts)


def _versions(packages: Sequence[str]) -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", *packages):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _packages(runtime: str) -> tuple[str, ...]:
    namespace: dict[str, Any] = {}
    text = (STANDALONE / f"{runtime}.py").read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("PACKAGES = ")), "PACKAGES = ()")
    exec(line, namespace)  # one literal tuple of distribution names
    return tuple(namespace["PACKAGES"])


def script_text(runtime: str, header: str) -> str:
    """``repro.py``: the runtime's standalone program and the driver, as one file."""
    program = (STANDALONE / f"{runtime}.py").read_text()
    driver = (STANDALONE / "driver.py").read_text()
    return (
        f'"""{header}"""\n\n# --- the runtime: harness/targets/standalone/{runtime}.py ---\n'
        f"{program}\n\n# --- the driver: harness/targets/standalone/driver.py ---\n{driver}\n\n"
        'if __name__ == "__main__":\n    sys.exit(main())\n'
    )


def _run_target(target: Target, artifact: Artifact, calls: Calls, threading: StateThreading | None):
    """The target's outputs on each call from its initial state, up to a call that raises
    (returned as the exception, with the calls before it)."""
    outputs: list[Sequence[Any]] = []
    with target.load(artifact) as runner:

        def step(call: Any) -> Sequence[Any]:
            out = runner.run(*call)
            outputs.append(out)
            return out

        try:
            run_sequence(step, calls, threading)
        except Exception as exc:  # a runtime that raises on a call is what the reproducer shows
            return outputs, exc
    return outputs, None


def _judged_masks(judge: Judge, case: ModelCase, expected: list[Sequence[Any]]) -> dict[str, np.ndarray]:
    """``call<K>.<output>`` -> where the output is judged, for outputs with ``judged_where``."""
    masks: dict[str, np.ndarray] = {}
    names = case.output_names
    for name in names:
        if name not in judge.where:
            continue
        try:
            stacked = {n: np.stack([to_numpy(call[i]) for call in expected]) for i, n in enumerate(names)}
            whole = judge.where[name].mask(stacked, name)
            per_call = [whole[k] for k in range(len(expected))]
        except (ValueError, HarnessError):
            per_call = [
                judge.where[name].mask({n: to_numpy(call[i]) for i, n in enumerate(names)}, name)
                for call in expected
            ]
        for k, mask in enumerate(per_call):
            masks[f"call{k}.{name}"] = np.asarray(mask, dtype=bool)
    return masks


def _copy_artifact(artifact: Artifact, folder: Path) -> tuple[str, str, list[str]]:
    """(the path repro.json names, the file's sha256, notes): the artifact and the files it
    needs copied under ``artifact/``, or named where they are when they are large."""
    files = [Path(artifact.path), *[f for f in artifact.files if Path(f) != Path(artifact.path)]]
    files = [f for f in dict.fromkeys(files) if f.exists()]
    digest = hashlib.sha256(Path(artifact.path).read_bytes()).hexdigest()
    size = sum(f.stat().st_size for f in files)
    if size > COPY_LIMIT_BYTES:
        return (
            str(Path(artifact.path).resolve()),
            digest,
            [
                f"the artifact ({size / 2**20:.0f} MB) is not copied: repro.py reads it where it is "
                f"(--artifact=PATH elsewhere)"
            ],
        )
    into = folder / "artifact"
    into.mkdir(parents=True, exist_ok=True)
    for f in files:
        try:  # a hard link where the file system allows it: a large file is not copied per input
            os.link(f, into / f.name)
        except OSError:
            shutil.copy2(f, into / f.name)
    return f"artifact/{Path(artifact.path).name}", digest, []


def write_repro(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    calls: Calls,
    folder: Path,
    *,
    input_name: str,
    judge: Judge | None = None,
    module: torch.nn.Module | None = None,
    localization: dict[str, Any] | None = None,
    suite: str | None = None,
) -> Repro:
    """Write the reproducer of ``target``'s run of ``calls`` against eager into ``folder``."""
    runtime = target.standalone
    if runtime is None:
        raise ReproUnsupported(f"{target.name}: no standalone program to reproduce its runs with")
    judge = judge if judge is not None else Judge.for_cell(case, target)
    threading = StateThreading.of(case)
    calls = list(calls)
    eager_module = module if module is not None else built(case.build).eval()
    expected_all = run_module(fresh_copy(eager_module), calls, case=case).outputs
    actual, raised = _run_target(target, artifact, calls, threading)
    notes: list[str] = []
    first: int | None
    output: str | None = None
    detail = ""
    if raised is not None:
        first = len(actual)
        detail = f"the runtime raised on call {first}: {type(raised).__name__}: {str(raised).splitlines()[0][:200]}"
    else:
        found = judge.first_divergence(expected_all, actual, case.output_names)
        first = found[0] if found else None
        if found:
            output, detail = found[1].name, found[1].summary()
    kept = len(calls) if first is None else first + 1
    if judge.by_metric:
        notes.append(
            f"the cell is judged by a task metric ({judge.metric.name if judge.metric else 'none'}); "
            "repro.py compares element by element with the case's tolerances"
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    expected = expected_all[:kept]
    np.savez(
        folder / "inputs.npz",
        **{
            f"call{k}.{name}": to_numpy(v)
            for k, call in enumerate(calls[:kept])
            for name, v in zip(case.input_names, call)
        },
    )
    np.savez(
        folder / "expected.npz",
        **{
            f"call{k}.{name}": to_numpy(v)
            for k, out in enumerate(expected)
            for name, v in zip(case.output_names, out)
        },
    )
    masks = _judged_masks(judge, case, list(expected))
    if masks:
        np.savez(folder / "judged.npz", **masks)
    artifact_path, digest, copy_notes = _copy_artifact(artifact, folder)
    notes += copy_notes
    meta = artifact.meta
    state = None
    if meta.get("state_names") and meta.get("state_inputs"):
        state = {
            "names": list(meta["state_names"]),
            "inputs": list(meta["state_inputs"]),
            "outputs": list(meta.get("state_outputs", [])),
            "file": meta.get("state_file"),
        }
        read_initial_state(artifact, state["names"])  # a lifted file without its state says so here
    packages = _packages(runtime)
    versions = _versions(packages)
    config = {
        "case": case.name,
        "target": target.name,
        "input": input_name,
        "suite": suite,
        "runtime": ", ".join(f"{p} {versions.get(p, '?')}" for p in packages),
        "artifact": artifact_path,
        "sha256": digest,
        "calls": kept,
        "inputs": list(case.input_names),
        "outputs": list(case.output_names),
        "tolerances": {n: [judge.tolerance(n).atol, judge.tolerance(n).rtol] for n in case.output_names},
        "threading": [[i, o] for i, o in threading.pairs.values()] if threading else [],
        "state": state,
        "options": target.standalone_options(),
        "versions": versions,
    }
    (folder / "repro.json").write_text(json.dumps(config, indent=2))
    header = (
        f"Reproducer: {case.name} exported to {target.name} computes other outputs than eager PyTorch.\n\n"
        f"Written by export-conformance; runs with numpy and {', '.join(packages)} only:\n\n"
        f"    python repro.py    # exit 1: the first divergent call; 0: every call agrees\n"
    )
    (folder / "repro.py").write_text(script_text(runtime, header))
    repro = Repro(folder, kept, first, output, detail, tuple(notes))
    module_notes: list[str] = []
    if localization is not None and first is not None:
        module_notes = write_module_repro(
            case, target, artifact, calls[:kept], folder, module=eager_module, localization=localization
        )
    (folder / "README.md").write_text(_readme(repro, config, localization, [*notes, *module_notes]))
    return Repro(folder, kept, first, output, detail, tuple([*notes, *module_notes]))


def _readme(
    repro: Repro, config: dict[str, Any], localization: dict[str, Any] | None, notes: list[str]
) -> str:
    versions = config["versions"]
    packages = [p for p in versions if p not in ("python", "platform")]
    lines = [
        f"# {config['case']} on {config['target']}: "
        + (
            f"outputs leave eager's at call {repro.first}"
            if repro.first is not None
            else "no divergence on these calls"
        ),
        "",
        f"Input `{config['input']}`, {repro.calls} calls"
        + (
            f" (the divergence at call {repro.first} needs the {repro.first} before it)"
            if repro.first
            else ""
        )
        + ".",
        "",
    ]
    if repro.detail:
        lines += [f"What the harness measured: {repro.detail}", ""]
    if localization and localization.get("headline"):
        lines += [f"Localisation: {localization['headline']}", ""]
    lines += [
        "Run it (nothing but numpy and the runtime is needed):",
        "",
        "```",
        "pip install " + " ".join(f"{p}=={versions[p]}" for p in packages if versions[p] != "not installed"),
        "python repro.py",
        "```",
        "",
        "Files: `repro.py` (the runtime's program and the comparison), `inputs.npz` (`call<K>.<input>`), "
        "`expected.npz` (eager's outputs, `call<K>.<output>`)"
        + (", `judged.npz` (where an output is judged)" if (repro.folder / "judged.npz").exists() else "")
        + f", `repro.json` (names, tolerances, state), the artifact `{config['artifact']}` "
        f"(sha256 `{config['sha256']}`).",
        "",
        "Tolerances (|runtime - eager| <= atol + rtol |eager|): "
        + ", ".join(f"{n} atol={a:g} rtol={r:g}" for n, (a, r) in config["tolerances"].items())
        + ".",
        "",
        "Recorded with: " + ", ".join(f"{k} {v}" for k, v in config["versions"].items()) + ".",
    ]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
