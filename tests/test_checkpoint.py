import pytest
import torch

from c3d_rt.core.config import ModelConfig
from c3d_rt.model.c3d import C3D
from c3d_rt.model.checkpoint import SEQUENTIAL_KEYS, CheckpointError, atomic_save, init_from_pretrained, load_checkpoint

SPORTS = ModelConfig(num_classes=487, width=0.0625, crop_size=112)  # Sports-1M head, narrow for speed


def _sequential(state):
    inverse = {v: k for k, v in SEQUENTIAL_KEYS.items()}
    return {f"{inverse[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in state.items()}


@pytest.mark.parametrize("layout", ["plain", "sequential", "reference", "dataparallel"])
def test_imports_every_known_layout(tmp_path, layout):
    source = C3D(SPORTS)
    state = source.state_dict()
    payload = {
        "plain": state,
        "sequential": _sequential(state),
        "reference": {"state_dict": state, "opt_dict": {}, "epoch": 12},
        "dataparallel": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
    }[layout]
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.num_classes == 487 and ckpt.model_config.width == 0.0625
    model = ckpt.build_model()
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_487_class_head_is_replaced_with_a_message(tmp_path):
    path = tmp_path / "sports1m.pth"
    source = C3D(SPORTS)
    torch.save(source.state_dict(), path)
    target = C3D(ModelConfig(num_classes=5, width=0.0625))
    messages = []
    init_from_pretrained(target, load_checkpoint(path), messages.append)
    assert any("487" in m and "re-initialised" in m for m in messages)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.fc7.weight, source.fc7.weight)
    assert target.fc8.weight.shape == (5, target.config.fc_width)


def test_not_a_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt.*cannot be read"):
        load_checkpoint(path)


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(CheckpointError, match="resnet.pt: not a C3D checkpoint"):
        load_checkpoint(path)


def test_wrong_width_pretrained_weights_are_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(C3D(ModelConfig(num_classes=4, width=0.125)).state_dict(), path)
    with pytest.raises(CheckpointError, match="--width 0.125"):
        init_from_pretrained(C3D(ModelConfig(num_classes=4, width=0.0625)), load_checkpoint(path))


def test_atomic_save_gives_the_usual_file_mode(tmp_path):
    import os

    atomic_save({"a": torch.ones(1)}, tmp_path / "w.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "w.pt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "last.pt"
    atomic_save({"a": torch.ones(1)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"b": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["a"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_batchnorm_mismatch_says_which_recipe_fits(tmp_path):
    path = tmp_path / "bn.pt"
    torch.save(C3D(ModelConfig(num_classes=4, width=0.0625, batch_norm=True)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights are for C3D-BN .* plain C3D .* --recipe scratch"):
        init_from_pretrained(C3D(ModelConfig(num_classes=4, width=0.0625)), load_checkpoint(path))


def test_an_exported_model_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "c3d.onnx"
    path.write_bytes(b"\x08\x07not a pickle")
    with pytest.raises(CheckpointError, match="an exported model, not a training checkpoint"):
        load_checkpoint(path)
