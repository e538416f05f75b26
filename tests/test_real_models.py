"""Real trained models whose weights ship inside PyPI packages, and the publisher's own export
gated as a user's file: silero-vad (explicit state, per-call sample rate) and resemblyzer's
speaker encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness

pytestmark = pytest.mark.filterwarnings("ignore")

SILERO = ("fixtures.silero_vad",)


def test_the_silero_module_computes_what_the_publishers_torchscript_computes():
    from fixtures import silero_vad as sv

    module = sv.build()
    scripted = torch.jit.load(str(sv.package_file("silero_vad.jit")), map_location="cpu")
    for name in ("speech", "noise_then_speech", "tone"):
        calls = sv.CASE.inputs[name]()
        scripted.reset_states()
        state, ours, theirs = calls[0][1], [], []
        with torch.no_grad():
            for window, _, sr in calls:
                prob, state = module(window, state, sr)
                ours.append(float(prob))
                new = window[:, sv.CONTEXT :]  # the package's own call takes the 512 new samples
                theirs.append(float(scripted(new, int(sr))))
        assert np.abs(np.array(ours) - np.array(theirs)).max() <= 1e-6, name
        if name == "tone":
            assert max(theirs) < 0.5  # a tone is not speech
        else:
            assert max(theirs) > 0.5  # the synthetic voice is speech to the publisher's model


def _gate(inner_pytest, path):
    """The plugin, in a temp project, judging ``path`` as the user's silero_vad ONNX file."""
    return inner_pytest(
        f"--artifact=silero_vad:onnx={path}",
        "--conformance-targets=onnx",
        "-p",
        "no:xdist",
        modules=SILERO,
        suites=("test_outputs", "test_streaming"),
    )


def test_the_publishers_onnx_passes_as_a_users_artifact(inner_pytest):
    from fixtures import silero_vad as sv

    result = _gate(inner_pytest, sv.package_file("silero_vad.onnx"))
    assert result.ret == 0, result.stdout.str()[-4000:]
    assert "every cell on your files passed" in result.stdout.str()


def test_the_publishers_onnx_with_one_layer_scaled_fails_without_a_state_diagnosis(inner_pytest, tmp_path):
    import onnx
    from onnx import numpy_helper

    from fixtures import silero_vad as sv

    model = onnx.load(str(sv.package_file("silero_vad.onnx")))
    changed = 0

    def scale_third_convolution(graph) -> None:
        nonlocal changed
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    scale_third_convolution(attribute.g)
                elif (
                    node.op_type == "Constant"
                    and attribute.type == onnx.AttributeProto.TENSOR
                    and "then_branch" in node.output[0]  # the 16 kHz branch of the sr If
                    and node.output[0].endswith("encoder.2.reparam_conv.weight")
                ):
                    array = numpy_helper.to_array(attribute.t)
                    attribute.t.CopyFrom(numpy_helper.from_array(array * 1.5, attribute.t.name))
                    changed += 1

    scale_third_convolution(model.graph)
    assert changed, "no 64x64 convolution found in the publisher's graph"
    path = tmp_path / "silero_vad.onnx"
    onnx.save(model, str(path))
    result = _gate(inner_pytest, path)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "cells on your files did not pass" in text
    assert "stream-continuity" in text and "state dropped" not in text and "state advanced" not in text


def test_the_publishers_half_precision_file_is_one_clear_error(tmp_path):
    """silero_vad_half.onnx has no sample-rate input: gating it against the case says so."""
    from fixtures import silero_vad as sv
    from harness.run.external import ArtifactOverride, external_artifact

    with pytest.raises(harness.ArtifactError, match=r"inputs differ: .*missing \['sr'\]"):
        external_artifact(
            ArtifactOverride("silero_vad", "onnx", sv.package_file("silero_vad_half.onnx")), tmp_path
        )


def test_the_speaker_encoder_loads_every_publisher_weight():
    from fixtures import speaker_encoder as se

    checkpoint = torch.load(se.weights_file(), map_location="cpu", weights_only=False)["model_state"]
    module = se.build()
    assert set(module.state_dict()) == {k for k in checkpoint if not k.startswith("similarity_")}
    for name, value in module.state_dict().items():
        assert torch.equal(value, checkpoint[name])
    embeddings = module(se._mels("both")).detach()
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float(embeddings[0] @ embeddings[1]) < 0.9  # two voices, two speakers
