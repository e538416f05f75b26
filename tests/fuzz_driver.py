"""Run one (possibly corrupted) artifact through what ``--artifact`` does, in a child process,
and print one JSON line saying how it ended. Used by test_artifact_fuzz: an abort or a hang of
a runtime shows up as the child's exit status, never as the test session dying."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(case_name: str, target_name: str, path: str, work: str) -> None:
    import fixtures.toys  # noqa: F401  (registers the toy cases)
    import harness
    from harness.checks.equivalence import check_equivalence
    from harness.core.errors import TargetRunError
    from harness.core.shapes import InputSignatureError
    from harness.plugin.suites import evidence_for
    from harness.run.eager import eager_reference
    from harness.run.external import ArtifactOverride, external_artifact

    case, target = harness.case(case_name), harness.target(target_name)
    try:
        artifact = external_artifact(ArtifactOverride(case_name, target_name, Path(path)), Path(work))
        with target.load(artifact) as runner:
            calls = case.inputs[case.main_input]()
            verdict = check_equivalence(
                evidence_for("equivalence", target, runner, eager_reference(case, calls))
            )
        print(
            json.dumps(
                {"outcome": "verdict-pass" if verdict else "verdict-fail", "message": verdict.summary()}
            )
        )
    except harness.ArtifactError as exc:
        print(json.dumps({"outcome": "artifact-error", "message": str(exc)}))
    except (TargetRunError, InputSignatureError) as exc:
        print(json.dumps({"outcome": "verdict-fail", "message": str(exc).splitlines()[0]}))
    except Exception as exc:  # what the fuzz test exists to catch
        print(json.dumps({"outcome": "unexpected", "message": f"{type(exc).__name__}: {exc}"[:2000]}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
