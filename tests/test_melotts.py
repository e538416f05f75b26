"""MeloTTS-style cases: signature errors, data-dependent output length, the audio metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fixtures.models.vits as vits
import harness
from fixtures.melotts import CONFIG
from harness.checks.equivalence import check_equivalence, eager_outputs
from harness.metrics import log_spectral_distance
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets import Artifact


@pytest.mark.slow
@pytest.mark.parametrize("target_name", ["onnx", "torch-export"])
def test_an_80_bin_mel_fed_to_the_192_channel_decoder_is_a_signature_error(export_cache, target_name):
    case = harness.case("melotts_vocoder")
    target = harness.target(target_name)
    latent, speaker = case.example_inputs()
    mel = torch.randn(1, 80, latent.shape[-1])  # the fault: a mel spectrogram where the latent goes
    with target.load(export_cache.get(case, target)) as runner:
        with pytest.raises(harness.InputSignatureError) as caught:
            runner.run(mel, speaker)
    message = str(caught.value)
    assert message.startswith(str(runner.artifact.path))
    assert "input 'latent' dimension 1 is 80 where the graph has 192" in message
    assert "the artifact takes float32 (1, 192, latent_2 in [8, 128])" in message


@pytest.mark.slow
def test_inputs_in_the_wrong_order_are_a_signature_error(export_cache):
    case = harness.case("melotts")
    target = harness.target("onnx")
    inputs = list(case.example_inputs())
    inputs[5], inputs[6] = inputs[6], inputs[5]  # ja_bert (768) where bert (1024) goes
    with target.load(export_cache.get(case, target)) as runner:
        with pytest.raises(
            harness.InputSignatureError, match="input 'bert' dimension 1 is 768 where the graph has 1024"
        ):
            runner.run(*inputs)


def test_the_synthesizer_output_length_follows_the_predicted_durations():
    case = harness.case("melotts")
    module = case.build()
    normal = eager_outputs(module, case.inputs["phrase"](), case.output_names)
    slow = eager_outputs(module, case.inputs["slow_phrase"](), case.output_names)
    frames = normal["durations"].sum()
    assert normal["audio"].shape[-1] == frames * CONFIG.hop
    assert slow["audio"].shape[-1] > normal["audio"].shape[-1]


def _length_baking_sequence_mask(length, max_length=None):
    """The planted fault: the output length read as a Python int, which a tracer freezes."""
    if max_length is None:
        max_length = int(length.max())
    return torch.arange(max_length, dtype=length.dtype).unsqueeze(0) < length.unsqueeze(1)


@pytest.mark.slow
def test_an_export_that_bakes_the_output_length_is_caught(tmp_path, monkeypatch):
    case = harness.case("melotts")
    module = case.build()
    path = tmp_path / "baked-length.ts"
    with monkeypatch.context() as patch:
        patch.setattr(vits, "sequence_mask", _length_baking_sequence_mask)
        with torch.no_grad(), pytest.warns(torch.jit.TracerWarning):
            traced = torch.jit.trace(module, case.example_inputs(), check_trace=False)
    torch.jit.save(traced, str(path))
    artifact = Artifact(path, "torchscript", case.name, case.input_names, case.output_names)
    calls = case.inputs["slow_phrase"]()
    target = harness.target("torchscript")
    with target.load(artifact) as runner:
        eager = eager_reference(case, calls, module=module)
        result = check_equivalence(evidence_for("equivalence", target, runner, eager))
    assert not result
    assert "audio: shape" in result.summary() and "axis 3 is" in result.summary()
    assert result.metric is not None and result.metric.value == float("inf")
    # the example's own length still matches: one input cannot reveal the fault
    same = case.inputs["phrase"]()
    with target.load(artifact) as runner:
        assert check_equivalence(
            evidence_for("equivalence", target, runner, eager_reference(case, same, module=module))
        )


def test_log_spectral_distance_grows_with_the_error():
    metric = log_spectral_distance(output="audio", threshold=0.5)
    rng = np.random.default_rng(0)
    clean = np.sin(2 * np.pi * 440 * np.arange(8192) / 44100)[None, None, None, :]
    slightly = clean + 1e-5 * rng.standard_normal(clean.shape)
    badly = clean + 0.3 * rng.standard_normal(clean.shape)
    assert metric({"audio": clean}, {"audio": clean}).value == 0.0
    assert metric({"audio": clean}, {"audio": slightly})
    judged = metric({"audio": clean}, {"audio": badly})
    assert not judged
    assert set(judged.figures) == {"lsd_512_db", "lsd_1024_db", "lsd_2048_db", "spectral_convergence"}
    assert judged.value == pytest.approx(np.mean([judged.figures[f"lsd_{n}_db"] for n in (512, 1024, 2048)]))
    assert metric({"audio": clean}, {"audio": clean[..., :4096]}).value == float("inf")


def test_the_synthesizer_built_under_no_grad_is_the_same_model():
    from fixtures.melotts import build_synthesizer

    with torch.no_grad():
        quiet = build_synthesizer()
    normal = build_synthesizer()
    assert list(quiet.state_dict()) == list(normal.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(quiet.state_dict().values(), normal.state_dict().values()))


def test_token_disagreement_counts_changed_tokens_and_shape_changes():
    from harness.metrics import token_disagreement

    metric = token_disagreement(output="tokens")
    ids = np.arange(8).reshape(1, 8)
    changed = ids.copy()
    changed[0, :2] = 99
    assert metric({"tokens": ids}, {"tokens": ids}).value == 0.0
    assert metric({"tokens": ids}, {"tokens": changed}).value == 0.25
    assert metric({"tokens": ids}, {"tokens": ids[:, :4]}).value == 1.0
