import pytest
import torch

from c3d_rt.core.config import ModelConfig, Preprocessing
from c3d_rt.model.c3d import C3D, build_c3d, count_parameters, head_params, param_groups

from .conftest import TINY


def test_full_size_c3d_matches_the_paper():
    model = build_c3d(num_classes=101).eval()
    assert model.config.fc6_in == 8192
    assert model.fc6.in_features == 8192 and model.fc6.out_features == 4096
    assert 78_000_000 < count_parameters(model) < 79_000_000
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 16, 112, 112)).shape == (1, 101)


def test_preprocessing_defaults_are_the_c3d_contract():
    prep = Preprocessing()
    assert prep.resize_wh == (171, 128) and prep.crop_size == 112
    assert prep.center_offsets == (8, 30)  # rows 8:120, cols 30:142
    assert prep.mean_bgr == (90.0, 98.0, 102.0)


@pytest.mark.parametrize("width,crop", [(0.0625, 32), (0.125, 64), (0.25, 112)])
def test_narrow_models_derive_fc6_input(width, crop):
    config = ModelConfig(num_classes=7, width=width, crop_size=crop)
    model = C3D(config)
    features = model.features(torch.zeros(config.input_shape(2)))
    assert features.flatten(1).shape[1] == config.fc6_in
    assert model(torch.zeros(config.input_shape(2))).shape == (2, 7)


def test_every_parameter_gets_a_gradient():
    model = C3D(TINY).train()
    loss = model(torch.randn(TINY.input_shape(2)) * 50).logsumexp(1).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_seed_learning_rate_groups():
    model = C3D(TINY)
    groups = param_groups(model, lr=1e-3)
    assert groups[0]["lr"] == pytest.approx(1e-3) and groups[1]["lr"] == pytest.approx(1e-2)
    head = {id(p) for p in head_params(model)}
    assert head == {id(model.fc8.weight), id(model.fc8.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="clip_len"):
        ModelConfig(clip_len=12)
    with pytest.raises(ValueError, match="crop_size"):
        ModelConfig(crop_size=100)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(num_classes=9, width=0.125, crop_size=48),
                                    ModelConfig(num_classes=4, width=0.25, crop_size=64, clip_len=32)],
                         ids=["paper", "demo", "long-clip"])
def test_the_contract_counts_the_networks_flops(config):
    # ModelConfig.gflops (torch-free: the bench holds rows against it) is what torch counts on the real network
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        C3D(config).eval()(torch.zeros(config.input_shape(1)))
    assert config.gflops == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9)
    if config == ModelConfig():
        assert round(config.gflops) == 77  # the C3D paper's 38.5 GMAC


def test_the_machines_matrix_rates_are_measured():
    from c3d_rt.core.machine import cpu_has_bf16, matrix_rates

    rates = matrix_rates(seconds=0.05, n=256)
    assert rates["library"].startswith("torch") and rates["fp32"] > 0
    assert (rates["bf16"] is not None) == cpu_has_bf16()  # emulated bf16 is no floor
    assert rates["int8"] is None or rates["int8"] > 0
