"""Top-k pixels of Captum's own attributions, the baselines a class pattern is measured against."""

from __future__ import annotations

from typing import Any, Callable, Dict, Union

import torch
from torch import Tensor

from .._utils import evaluation_mode

CAPTUM_BASELINES = ("Saliency", "IntegratedGradients", "InputXGradient", "Occlusion", "GuidedBackprop")
"""Captum methods with settings suited to images in :func:`captum_attribution`."""


def captum_attribution(model: Callable, method: Union[str, type], canvas: Tensor, target: int) -> Tensor:
    """Attribute ``canvas`` to ``target`` with a Captum method, with settings that suit images.

    Args:
        model: the classifier.
        method: a name from ``captum.attr`` (``"Saliency"``, ``"IntegratedGradients"``,
            ``"Occlusion"``, ...) or the class itself.
        canvas: C x H x W image.
        target: the class.

    Returns:
        A C x H x W attribution.
    """
    import captum.attr as attr

    if isinstance(method, str):
        if method not in attr.__all__:
            raise ValueError(f"unknown Captum method {method!r}; try one of {CAPTUM_BASELINES}.")
        method_class = getattr(attr, method)
    else:
        method_class = method
    explainer = method_class(model)
    # A leaf that requires grad, so gradient methods do not warn about setting it themselves.
    batch = canvas.detach().unsqueeze(0).clone().requires_grad_(True)
    name = method_class.__name__
    kwargs: Dict[str, Any] = {}
    if name == "Occlusion":
        side = max(2, canvas.shape[-1] // 8)
        kwargs = {
            "sliding_window_shapes": (canvas.shape[0], side, side),
            "strides": (canvas.shape[0], max(1, side // 2), max(1, side // 2)),
        }
    elif name in ("IntegratedGradients",):
        kwargs = {"baselines": torch.zeros_like(batch), "n_steps": 32}
    with evaluation_mode(model, name):
        result = explainer.attribute(batch, target=int(target), **kwargs)
    return result[0].detach()
