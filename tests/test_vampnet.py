"""VampNet-style cases: the codec's interfaces, a length-specialised export, incomplete weight
transfer diagnosed by the weight audit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import harness
from fixtures.models.dac import MaskedSampler
from fixtures.vampnet import CODEC, TRANSFORMER, build_decoder, build_encoder, build_sampler
from harness.checks.equivalence import check_equivalence
from harness.checks.input_space import check_dynamic_shapes
from harness.checks.weights import artifact_weights, audit_weights
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets import Artifact


def test_codec_interfaces_match_vampnet():
    audio = torch.zeros(1, 1, 10 * CODEC.hop)
    with torch.no_grad():
        codes = build_encoder()(audio)
        decoded = build_decoder()(codes)
    assert CODEC.hop == 768 and CODEC.sample_rate == 44100
    assert codes.shape == (1, 14, 10) and codes.dtype == torch.int64
    assert int(codes.max()) < 1024 and decoded.shape == audio.shape
    sampler = build_sampler()
    assert sampler.model.classifier.out_channels == 4096  # 1024 classes x 4 coarse codebooks


def test_the_mask_generator_keeps_the_prompt_and_masks_upper_codebooks():
    case = harness.case("vampnet")
    codes, period, upper, draw, temperature = case.inputs["periodic_prompt"]()[0]
    with torch.no_grad():
        _, tokens = build_sampler()(codes, period, upper, draw, temperature)
    kept = tokens == codes
    assert kept[:, :3, ::7].all()  # every 7th step of the lower codebooks is the prompt
    assert kept[:, 3].float().mean() < 0.05  # codebook 3 and up are generated everywhere


def _export(module: nn.Module, case, path, target_name: str, dynamic: bool = True) -> Artifact:
    example = case.example_inputs()
    shapes = None
    if dynamic:
        from torch.export import Dim

        tokens = Dim("tokens", min=8, max=512)
        shapes = ({2: tokens}, None, None, {2: tokens}, None)
    if target_name == "torch-export":
        torch.export.save(
            torch.export.export(module, example, dynamic_shapes=shapes, strict=False), str(path)
        )
    else:
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=list(case.input_names),
            output_names=list(case.output_names),
        )
    return Artifact(path, target_name, case.name, case.input_names, case.output_names)


@pytest.mark.slow
@pytest.mark.parametrize("target_name", ["torch-export", "onnx"])
def test_an_export_fixed_at_100_tokens_is_caught(tmp_path, target_name):
    case = harness.case("vampnet")
    module = case.build()
    suffix = ".onnx" if target_name == "onnx" else ".pt2"
    artifact = _export(module, case, tmp_path / f"fixed-100{suffix}", target_name, dynamic=False)
    target = harness.target(target_name)
    with target.load(artifact) as runner:
        eager = eager_reference(case, [tuple(case.example_inputs())], module=module)
        result = check_dynamic_shapes(evidence_for("dynamic-shapes", target, runner, eager))
    assert not result
    assert result.diagnosis.startswith(
        "shape specialised: the export rejects codes dimension 2 = 8 (the example has 100)"
    )


def _reinitialised(part: str) -> nn.Module:
    """The planted fault: a conversion that forgot to copy one part of the weights."""
    sampler = copy.deepcopy(build_sampler())
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        if part == "classifier":
            weight = sampler.model.classifier.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1)
        elif part == "embedding":
            out_proj = sampler.model.embedding.out_proj.weight
            out_proj.copy_(torch.randn(out_proj.shape, generator=generator) * 0.1)
        else:  # a 1025-way head: the MASK token counted as a class
            old = sampler.model.classifier
            sampler.model.classifier = nn.Conv1d(old.in_channels, 1025 * TRANSFORMER.n_codebooks, 1)
            return _PadDraw(sampler).eval()
    return sampler.eval()


class _PadDraw(nn.Module):
    """Widens the sampler's draw by one class so that a 1025-way head can sample at all."""

    def __init__(self, sampler: nn.Module) -> None:
        super().__init__()
        self.sampler = sampler

    def forward(self, codes, period, upper_codebook, draw, temperature):
        draw = torch.nn.functional.pad(draw, (0, 1), value=0.5)
        return self.sampler(codes, period, upper_codebook, draw, temperature)


@pytest.mark.slow
@pytest.mark.parametrize("target_name", ["onnx", "torch-export"])
@pytest.mark.parametrize(
    "part, expected",
    [
        ("classifier", "model.classifier.weight holds values unrelated to eager's"),
        ("embedding", "model.embedding.out_proj.weight holds values unrelated to eager's"),
        ("head_1025", "classifier.weight has shape (4100, 64, 1), eager (4096, 64, 1)"),
    ],
)
def test_incomplete_weight_transfer_is_diagnosed(tmp_path, target_name, part, expected):
    case = harness.case("vampnet")
    suffix = ".onnx" if target_name == "onnx" else ".pt2"
    artifact = _export(_reinitialised(part), case, tmp_path / f"{part}{suffix}", target_name)
    calls = case.inputs["periodic_prompt"]()
    eager = case.build()
    target = harness.target(target_name)
    with target.load(artifact) as runner:
        result = check_equivalence(
            evidence_for("equivalence", target, runner, eager_reference(case, calls, module=eager))
        )
    assert not result
    audit = audit_weights(eager, artifact_weights(artifact))
    assert not audit
    assert audit.diagnosis().startswith("incomplete weight transfer: ")
    assert expected in audit.diagnosis()


@pytest.mark.slow
def test_the_weight_audit_passes_a_faithful_export(export_cache):
    case = harness.case("vampnet")
    for target_name in ("onnx", "onnx-legacy", "torch-export", "torchscript"):
        artifact = export_cache.get(case, harness.target(target_name))
        weights = artifact_weights(artifact)
        assert weights is not None, target_name
        audit = audit_weights(case.build(), weights)
        assert audit and audit.compared > 0, (target_name, audit.diagnosis())


def test_the_sampler_signature_has_a_shared_token_axis():
    case = harness.case("vampnet")
    dims = {(d.input, d.axis): d.dim for d in case.dynamic_axes()}
    assert dims == {("codes", 2): "tokens", ("draw", 2): "tokens"}
    assert isinstance(case.build(), MaskedSampler)


@pytest.mark.slow
def test_the_equivalence_suite_names_the_weight_never_transferred(inner_pytest, tmp_path):
    """Through the plugin: the user's own ONNX file with a re-initialised classifier."""
    case = harness.case("vampnet")
    path = tmp_path / "user-export.onnx"
    _export(_reinitialised("classifier"), case, path, "onnx")
    result = inner_pytest(
        "--artifact",
        f"vampnet:onnx={path}",
        "--conformance-targets",
        "onnx",
        "-k",
        "test_equivalence and periodic_prompt",
        modules=("fixtures.vampnet",),
    )
    result.assert_outcomes(failed=1)
    text = " ".join(result.stdout.str().split())  # the terminal wraps long reasons
    assert "vampnet/onnx: equivalence [periodic_prompt]: onnx vs eager: incomplete weight transfer" in text
    assert "model.classifier.weight holds values unrelated to eager's" in text


@pytest.mark.parametrize("build", [build_encoder, build_decoder, build_sampler])
def test_a_model_built_under_no_grad_is_the_same_model(build):
    """Weight-norm removal under no_grad once left plain-tensor weights outside named_parameters
    (unseeded, so the encoder's codes changed from process to process)."""
    with torch.no_grad():
        quiet = build()
    normal = build()
    assert [n for n, _ in quiet.named_parameters()] == [n for n, _ in normal.named_parameters()]
    for (name, a), b in zip(quiet.state_dict().items(), normal.state_dict().values()):
        assert torch.equal(a, b), name
