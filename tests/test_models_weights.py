"""``weights=`` of the builders: enums from the local hub cache (never downloaded), files, state_dicts, errors."""

import os

import pytest
import torch

import resnet_kernels.models as rk
from resnet_kernels.models.weights import hub_path
from test_models_helpers import randomize_batchnorm

tv = pytest.importorskip("torchvision.models")


def _cifar_state_dict(seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(rk.resnet20(), seed).state_dict()


def _assert_loaded(model, state_dict):
    assert all(torch.equal(v, state_dict[k]) for k, v in model.state_dict().items() if k in state_dict)


def test_state_dict_and_path(tmp_path):
    state_dict = _cifar_state_dict()
    path = tmp_path / "resnet20.pth"
    torch.save(state_dict, path)
    _assert_loaded(rk.resnet20(weights=state_dict), state_dict)
    _assert_loaded(rk.resnet20(weights=path), state_dict)
    _assert_loaded(rk.resnet20(weights=str(path)), state_dict)


@pytest.fixture
def hub_dir(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield tmp_path
    torch.hub.set_dir(previous)


def test_enum_missing_file_names_the_path(hub_dir):
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match="never downloads") as info:
        rk.resnet18(weights=tv.ResNet18_Weights.IMAGENET1K_V1)
    assert str(expected) in str(info.value)
    assert not expected.exists()


def test_enum_and_its_name_load_from_hub_cache(hub_dir):
    torch.manual_seed(0)
    state_dict = randomize_batchnorm(tv.resnet18(), 0).state_dict()
    # torchvision's published checkpoints predate num_batches_tracked
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    path = hub_path(tv.ResNet18_Weights.IMAGENET1K_V1)
    os.makedirs(os.path.dirname(path))
    torch.save(state_dict, path)
    for weights in (tv.ResNet18_Weights.IMAGENET1K_V1, "IMAGENET1K_V1", "DEFAULT"):
        _assert_loaded(rk.resnet18(weights=weights), state_dict)
    with pytest.raises(ValueError, match="num_classes"):
        rk.resnet18(weights=tv.ResNet18_Weights.IMAGENET1K_V1, num_classes=10)


def test_enum_of_another_model_is_refused():
    with pytest.raises(TypeError, match="expected ResNet50_Weights"):
        rk.resnet50(weights=tv.ResNet18_Weights.IMAGENET1K_V1)
    with pytest.raises(TypeError, match="no torchvision weights"):
        rk.resnet20(weights=tv.ResNet18_Weights.IMAGENET1K_V1)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a file nor a ResNet18_Weights name"):
        rk.resnet18(weights=str(tmp_path / "nothing.pth"))
    with pytest.raises(FileNotFoundError, match="is not a file"):
        rk.resnet20(weights=tmp_path / "nothing.pth")


def test_mismatched_state_dict_lists_every_problem():
    state_dict = dict(_cifar_state_dict())
    del state_dict["layer1.0.conv1.weight"]
    del state_dict["fc.bias"]
    state_dict["layer9.weight"] = torch.zeros(1)
    state_dict["fc.weight"] = torch.zeros(100, 64)
    with pytest.raises(ValueError) as info:
        rk.resnet20(weights=state_dict)
    message = str(info.value)
    assert "missing keys (2): layer1.0.conv1.weight, fc.bias" in message
    assert "unexpected keys (1): layer9.weight" in message
    assert "wrong shapes (1): fc.weight: weights (100, 64), model (10, 64)" in message


def test_num_batches_tracked_may_be_absent():
    state_dict = {k: v for k, v in _cifar_state_dict().items() if not k.endswith("num_batches_tracked")}
    _assert_loaded(rk.resnet20(weights=state_dict), state_dict)


def test_file_without_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(TypeError, match="not a state_dict"):
        rk.resnet20(weights=path)
