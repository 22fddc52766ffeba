"""A CNN's penultimate embedding: the global-pooled features its classification head reads.

Taken by a forward hook on the head (``Dropout + Linear``, ``sts.cnn.models``) during the same
forward pass that gives the class probabilities, so probabilities stay exactly those of
``predict_proba`` and no architecture's forward is re-implemented here. Sizes: MobileNetV2
1280, ResNet18 512, DenseNet121 1024, InceptionV3 2048.
"""

from __future__ import annotations

import numpy as np


def head(model):
    """The module that maps the pooled features to class logits."""
    for name in ("classifier", "fc"):  # mobilenet_v2, densenet121 / resnet18, inception_v3
        module = getattr(model, name, None)
        if module is not None:
            return module
    raise ValueError(f"{type(model).__name__}: no classifier or fc head to take the embedding from")


def embedding_dim(model) -> int:
    """Number of features the head reads."""
    return int(next(m for m in head(model).modules() if hasattr(m, "in_features")).in_features)


def proba_and_embeddings(model, images: np.ndarray, idx: np.ndarray, device, batch_size: int = 128):
    """(softmax probabilities (len(idx), n_classes), embeddings (len(idx), d) float32) in eval
    mode, rows in ``idx`` order, from one forward pass per batch."""
    from sts.cnn.train import predict_proba

    captured = []
    hook = head(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().float().cpu()))
    try:
        proba = predict_proba(model, images, idx, device, batch_size)
    finally:
        hook.remove()
    emb = np.concatenate([c.numpy() for c in captured]) if captured else np.zeros((0, embedding_dim(model)))
    return proba, emb.astype(np.float32)


def network_embeddings(arch: str, state_dict: dict, n_classes: int, dropout: float, weights: str, images: np.ndarray,
                       idx: np.ndarray, device) -> np.ndarray:  # fmt: skip
    """(len(idx), d) embeddings of ``images[idx]`` by the network of a fitted ``state_dict``
    (``weights``: what it was trained from, which decides inception_v3's input transform)."""
    from sts.cnn.models import model_from_meta

    meta = {"arch": arch, "classes": list(range(n_classes)), "dropout": dropout, "input_size": [images.shape[-1]],
            "state_dict": state_dict, "train_params": {"weights": weights}}  # fmt: skip
    return proba_and_embeddings(model_from_meta(meta, device), images, idx, device)[1]
