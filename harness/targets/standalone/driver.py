"""The reproducer's driver: feed the recorded calls to the program in order, compare each call's
outputs with eager's recorded ones under the case's tolerances, print the first divergence.

Reads, beside the script: ``repro.json`` (names, tolerances, state, the artifact's file),
``inputs.npz`` (``call<K>.<input>``), ``expected.npz`` (``call<K>.<output>``) and, where an
output is judged only in part, ``judged.npz`` (``call<K>.<output>``: True where judged).
Exit status: 0 every call agrees, 1 a call diverges (or the runtime raises), 2 a file is missing.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _feed_names(graph, case, skip):
    """The graph's names for the case's, in the case's order: by name where the graph uses the
    case's names, else by position."""
    names = [n for n in graph if n not in skip]
    return list(case) if sorted(names) == sorted(case) else names


class NamedSteps:
    """Positional calls on a program of named graph values; a lifted state (``state.X`` in,
    ``next_state.X`` out) fed back from call to call, starting from its initial value."""

    def __init__(self, program, config):
        self.program = program
        state = config.get("state") or {}
        self.state_inputs = list(state.get("inputs", []))
        self.state_outputs = list(state.get("outputs", []))
        initial = config.get("initial_state") or {}
        self.state = {i: initial[n] for i, n in zip(self.state_inputs, state.get("names", []))}
        self.feeds = _feed_names(program.input_names, config["inputs"], set(self.state_inputs))
        self.fetches = _feed_names(program.output_names, config["outputs"], set(self.state_outputs))

    def run(self, inputs):
        feed = dict(zip(self.feeds, inputs))
        feed.update(self.state)
        out = self.program.run_named(feed)
        for i, o in zip(self.state_inputs, self.state_outputs):
            self.state[i] = out[o]
        return [out[n] for n in self.fetches]


def _compare(expected, actual, atol, rtol, judged):
    """(ok, the line that says how far apart, the largest error): element-wise ``|a - e| <= atol + rtol * |e|`` where
    judged; non-finite values must match exactly."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual)
    if a.shape != e.shape:
        return False, f"shape {list(a.shape)}, eager's {list(e.shape)}", float("inf")
    a = a.astype(np.float64)
    if judged is not None:
        a = np.where(judged, a, e)
    finite = np.isfinite(e) & np.isfinite(a)
    nonfinite_bad = (np.isfinite(e) != np.isfinite(a)) | (~finite & ~(np.isnan(e) & np.isnan(a)) & (e != a))
    err = np.where(finite, np.abs(a - e), 0.0)
    outside = finite & (err > atol + rtol * np.abs(np.where(finite, e, 0.0)))
    bad = outside | nonfinite_bad
    worst = int(np.argmax(err)) if err.size else 0
    text = f"max abs {float(err.max()) if err.size else 0.0:.3g}"
    if bad.any():
        where = np.unravel_index(int(np.argmax(np.where(bad, np.where(finite, err, np.inf), -1.0))), e.shape)
        text = (
            f"{int(bad.sum())} of {e.size} elements outside atol={atol:g} rtol={rtol:g}; {text} "
            f"(at {list(int(i) for i in where)}: eager {e[where]:.6g}, the runtime {a[where]:.6g})"
        )
    elif err.size:
        text += f" at {list(int(i) for i in np.unravel_index(worst, e.shape))}"
    return not bad.any(), text, float(err.max()) if err.size else 0.0


def main(argv=None, open_program=None):
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description="Feed the recorded calls to the artifact and compare with eager."
    )
    parser.add_argument(
        "--artifact", default=None, help="the exported file (default: the one beside this script)"
    )
    parser.add_argument(
        "--all", action="store_true", help="run every recorded call, past the first divergence"
    )
    args = parser.parse_args(argv)
    config = json.loads((here / "repro.json").read_text())
    artifact = Path(args.artifact) if args.artifact else here / config["artifact"]
    if not artifact.exists():
        print(f"{artifact}: not found (sha256 {config['sha256']}); pass --artifact=PATH", file=sys.stderr)
        return 2
    state_file = (config.get("state") or {}).get("file")
    if state_file:
        with np.load(artifact.with_name(state_file)) as stored:
            config["initial_state"] = {k: stored[k] for k in stored.files}
    opener = open_program or globals()["open_program"]
    try:
        program = opener(artifact, config)
    except ImportError as exc:
        needs = ", ".join(
            f"{p}=={v}" for p, v in config["versions"].items() if p not in ("python", "platform")
        )
        print(f"{exc}: this reproducer needs {needs}", file=sys.stderr)
        return 2
    step = NamedSteps(program, config) if hasattr(program, "run_named") else program
    inputs, expected = np.load(here / "inputs.npz"), np.load(here / "expected.npz")
    judged = np.load(here / "judged.npz") if (here / "judged.npz").exists() else {}
    tolerances = config["tolerances"]
    calls = config["calls"]
    print(
        f"{config['case']} on {config['target']} ({config['runtime']}): {calls} calls of input {config['input']!r}"
    )
    previous = None
    first = None
    for k in range(calls):
        feeds = [inputs[f"call{k}.{name}"] for name in config["inputs"]]
        for i, o in config.get("threading", []):
            if previous is not None:
                feeds[i] = previous[o]
        try:
            outputs = step.run(feeds)
        except Exception as exc:
            print(f"call {k}: the runtime raised {type(exc).__name__}: {exc}")
            return 1
        previous = outputs
        lines = []
        for j, name in enumerate(config["outputs"]):
            atol, rtol = tolerances[name]
            key = f"call{k}.{name}"
            ok, text, err = _compare(
                expected[key], outputs[j], atol, rtol, judged[key] if key in judged else None
            )
            lines.append((ok, name, text, err))
        bad = [line for line in lines if not line[0]]
        if bad:
            for _, name, text, _ in bad:
                print(f"call {k}: DIVERGES: {name}: {text}")
            if first is None:
                first = (k, bad[0][1], bad[0][2])
            if not args.all:
                break
        else:
            _, name, text, _ = max(lines, key=lambda line: line[3])
            print(f"call {k}: ok (largest error: {name} {text})")
    if first is None:
        print(f"no divergence: every output of the {calls} calls is within the case's tolerances")
        return 0
    k, name, text = first
    print(f"first divergence: call {k} (of {calls}), output {name}: {text}")
    return 1
