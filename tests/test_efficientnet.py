"""EfficientNet-B0: the layer structure a torchvision checkpoint needs."""

from __future__ import annotations

import torch

from fixtures.efficientnet import EfficientNetB0, build


def test_parameter_count_and_keys_match_torchvision_b0():
    net = EfficientNetB0(classes=1000, dropout=0.2)
    state = net.state_dict()
    # torchvision.models.efficientnet_b0(): 5,288,548 parameters, 360 state_dict entries
    assert sum(p.numel() for p in net.parameters()) == 5_288_548
    assert len(state) == 360
    assert "features.1.0.block.0.0.weight" in state  # expand ratio 1: no expansion conv
    assert "features.2.0.block.0.0.weight" in state and "features.2.0.block.3.1.running_var" in state
    assert "features.2.0.block.2.fc1.weight" in state and "classifier.1.weight" in state
    assert tuple(state["classifier.1.weight"].shape) == (1000, 1280)


def test_the_case_model_is_deterministic_in_eval_and_not_in_training():
    model = build()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
        model.train()  # dropout 0.4 and stochastic depth live, batch statistics
        assert not torch.equal(model(x)[0], model(x)[0])
