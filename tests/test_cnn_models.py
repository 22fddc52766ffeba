"""The four CNNs: forward/backward at the study's input sizes, heads, weights files, bad names."""

from __future__ import annotations

import pytest
import torch

from sts.cnn.models import STUDY_SIZE, build_model
from sts.settings import ARCHITECTURES, check_arch


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_backward_at_study_size(arch):
    torch.manual_seed(0)
    size = STUDY_SIZE[arch]
    model = build_model(arch, n_classes=5, dropout=0.5, input_size=size).train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    if arch == "inception_v3":  # trains with its auxiliary classifier at 299 px
        assert out.logits.shape == (2, 5) and out.aux_logits.shape == (2, 5)
        loss = out.logits.sum() + 0.4 * out.aux_logits.sum()
    else:
        assert out.shape == (2, 5)
        loss = out.sum()
    loss.backward()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.out_features == 5 and head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert any(d.p == 0.5 for d in dropouts)
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 5)  # evaluation never uses the auxiliary head


def test_inception_below_299_trains_without_aux():
    model = build_model("inception_v3", 3, input_size=80).train()
    out = model(torch.randn(2, 3, 80, 80))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)


def test_imagenet_weights_from_a_prestaged_file(tmp_path):
    """weights: imagenet with a local state dict loads that backbone, never the network."""
    torch.manual_seed(1)
    source = build_model("resnet18", 4, input_size=64)
    import torchvision

    backbone = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(backbone.state_dict(), path)
    model = build_model("resnet18", 4, input_size=64, weights="imagenet", weights_path=path)
    assert torch.equal(model.conv1.weight, backbone.conv1.weight)
    assert not torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc[1].out_features == 4


def test_bad_architecture_and_size_are_rejected():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'.*mobilenet_v2"):
        check_arch("vgg16")
    with pytest.raises(ValueError, match="inception_v3 needs inputs of at least 75 px"):
        build_model("inception_v3", 4, input_size=64)
    with pytest.raises(ValueError, match="weights 'coco'"):
        build_model("resnet18", 4, input_size=64, weights="coco")
