"""The study's four torchvision CNNs with their head replaced by dropout + Linear(n_classes).

Weights: ``none`` (random init; tests and the demo, no network) or ``imagenet``, taken from a
pre-staged state-dict file (``sts fetch-weights`` writes one through torchvision's weights
API) or, without a file, from torchvision's cache/download. InceptionV3 trains with its
auxiliary classifier (loss weight 0.4) when the input is at least 299 px; its aux head cannot
run on smaller maps, so below that it is left out (and logged).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sts.settings import check_arch

log = logging.getLogger(__name__)

STUDY_SIZE = {"mobilenet_v2": 224, "resnet18": 224, "densenet121": 224, "inception_v3": 299}
WEIGHTS = {  # torchvision weight enums of the study's ImageNet models
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "densenet121": "DenseNet121_Weights.IMAGENET1K_V1",
    "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1",
}
AUX_MIN_SIZE = 299
AUX_WEIGHT = 0.4


def uses_aux(arch: str, input_size: int) -> bool:
    return arch == "inception_v3" and input_size >= AUX_MIN_SIZE


def _head(dropout: float, n_in: int, n_classes: int):
    import torch.nn as nn

    return nn.Sequential(nn.Dropout(p=dropout), nn.Linear(n_in, n_classes))


def build_model(
    arch: str,
    n_classes: int,
    dropout: float = 0.0,
    input_size: int = 224,
    weights: str = "none",
    weights_path: str | Path | None = None,
):
    """A torchvision ``arch`` with a new head for ``n_classes`` (ImageNet backbone if asked)."""
    import torch
    import torchvision.models as tvm

    check_arch(arch, input_size)
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights {weights!r}: expected 'none' or 'imagenet'")
    kwargs = {}
    if arch == "inception_v3":
        # transform_input re-maps ImageNet-normalised inputs as the pretrained network expects.
        kwargs = {"aux_logits": True, "init_weights": weights == "none", "transform_input": weights == "imagenet"}
    model = getattr(tvm, arch)(weights=None, **kwargs)
    if weights == "imagenet":
        if weights_path:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        else:
            state = tvm.get_weight(WEIGHTS[arch]).get_state_dict(progress=False)
        model.load_state_dict(state)
        log.info("%s: ImageNet weights from %s", arch, weights_path or "torchvision")
    if arch == "mobilenet_v2":
        model.classifier = _head(dropout, model.last_channel, n_classes)
    elif arch == "resnet18":
        model.fc = _head(dropout, model.fc.in_features, n_classes)
    elif arch == "densenet121":
        model.classifier = _head(dropout, model.classifier.in_features, n_classes)
    else:
        model.fc = _head(dropout, model.fc.in_features, n_classes)
        if uses_aux(arch, input_size):
            model.AuxLogits.fc = torch.nn.Linear(model.AuxLogits.fc.in_features, n_classes)
        else:
            log.info("inception_v3 at %d px (< %d): auxiliary classifier left out", input_size, AUX_MIN_SIZE)
            model.aux_logits, model.AuxLogits = False, None
    return model


def model_from_meta(meta: dict, device="cpu"):
    """The network of a model.pt's contents, in eval mode on ``device``."""
    model = build_model(meta["arch"], len(meta["classes"]), meta["dropout"], int(meta["input_size"][0]))
    model.load_state_dict(meta["state_dict"])
    if meta["arch"] == "inception_v3":  # as trained: ImageNet backbones re-map their inputs
        model.transform_input = meta["train_params"].get("weights") == "imagenet"
    return model.to(device).eval()


def fetch_weights(arch: str, out_path: str | Path) -> Path:
    """Download ``arch``'s ImageNet weights through torchvision and save the state dict."""
    import torchvision.models as tvm

    from sts.io.atomic import save_torch_atomic

    check_arch(arch)
    state = tvm.get_weight(WEIGHTS[arch]).get_state_dict(progress=True)
    save_torch_atomic(state, out_path)
    return Path(out_path)
