"""Top-k pixels of Captum's own attributions, the baselines a class pattern is measured against.

A baseline is a Captum method name (run with settings that suit images), a Captum method
class, a ready Captum attribution object (with the user's own settings), or any callable
``f(inputs, target=...)`` that returns an attribution. :class:`CaptumBaseline` names one
and holds the keyword arguments of its call; :func:`resolve_baselines` turns what a user
wrote into a list of them with unique display names.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple, Type, Union

import captum.attr as captum_attr
import torch
from captum.attr import Attribution
from torch import Tensor, nn

from .._utils import Replaceable, evaluation_mode
from ..attr import pixel_scores

CAPTUM_BASELINES = ("Saliency", "IntegratedGradients", "InputXGradient", "Occlusion", "GuidedBackprop")
"""Captum methods with settings suited to images in :func:`captum_attribution`."""

BaselineMethod = Union[str, type, Attribution, Callable[..., Any]]
"""One baseline: a ``captum.attr`` method name or class, an attribution object, or a callable."""

Baselines = Union[BaselineMethod, "CaptumBaseline", Sequence[Any], Mapping[str, Any]]
"""What a caller may pass as baselines: one baseline, a sequence of them, or a mapping name -> baseline."""

RESERVED_NAMES = ("predictive_power", "floor", "random")
"""Names a baseline may not take: they are the report's own columns."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LONG_TEXT = 200
_FORMS = (
    "a captum.attr method name (e.g. 'Saliency'), a captum.attr method class, an Attribution object "
    "(e.g. NoiseTunnel(IntegratedGradients(model))), a callable f(inputs, target=...) -> attribution, "
    "or a CaptumBaseline"
)
# Reached by every module hook registration of torch (forward, pre-forward, backward).
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _implements_attribute(method_class: type) -> bool:
    """Whether a Captum class has an ``attribute`` of its own (the abstract bases have none)."""
    return any("attribute" in vars(klass) for klass in method_class.__mro__)


def _method_class(method: Union[str, type]) -> Type[Attribution]:
    """The ``captum.attr`` class a name or class stands for, refused unless it is built from the model alone.

    Raises:
        ValueError: an unknown name, or a method that needs more than the model to be built.
        TypeError: a class that is not a Captum attribution method.
    """
    if isinstance(method, str) and method not in captum_attr.__all__:
        raise ValueError(f"unknown Captum method {method!r}; try one of {CAPTUM_BASELINES}.")
    found = getattr(captum_attr, method) if isinstance(method, str) else method
    if not isinstance(found, type) or not issubclass(found, Attribution) or not _implements_attribute(found):
        raise TypeError(
            f"{getattr(found, '__name__', found)!r} is not a Captum attribution method; a baseline must be {_FORMS}."
        )
    required = [
        parameter.name
        for parameter in inspect.signature(found).parameters.values()
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if required not in (["forward_func"], ["model"]):
        raise ValueError(
            f"{found.__name__} needs {required} to be built, not the model alone: build the object yourself and "
            "pass it (e.g. NoiseTunnel(Saliency(model))), or pass a callable f(inputs, target=...) (e.g. one that "
            "upsamples LayerGradCam(model, layer) with LayerAttribution.interpolate)."
        )
    return found


def _chain(attribution: Attribution) -> str:
    """``NoiseTunnel(IntegratedGradients)``: the class of an attribution object and of the method it wraps."""
    inner = getattr(attribution, "attribution_method", None)
    name = type(attribution).__name__
    return f"{name}({_chain(inner)})" if isinstance(inner, Attribution) else name


def _default_name(method: Any) -> str:
    """The display name of a baseline given without one.

    Raises:
        ValueError: a lambda (it has no name of its own).
    """
    if isinstance(method, str):
        return method
    if isinstance(method, type):
        return method.__name__
    if isinstance(method, Attribution):
        return _chain(method)
    if isinstance(method, functools.partial):
        return _default_name(method.func)
    owner = getattr(method, "__self__", None)
    if isinstance(owner, Attribution):  # a bound attribute method: named after its object
        return _chain(owner)
    name = getattr(method, "__name__", None) or type(method).__name__
    if name == "<lambda>":
        raise ValueError(
            "a lambda has no name for the report: name it, e.g. CaptumBaseline(f, name='GradCAM') or "
            "baselines={'GradCAM': f}."
        )
    return name


def _stable_text(value: Any) -> str:
    """``repr`` without memory addresses, long texts replaced by their digest, tensors by shape, dtype and digest."""
    if isinstance(value, Tensor):
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        return f"Tensor(shape={list(value.shape)}, dtype={value.dtype}, sha256={digest})"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_stable_text(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key!r}: {_stable_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, Attribution):
        settings = {
            key: item
            for key, item in sorted(vars(value).items())
            if isinstance(item, (bool, int, float, str, type(None))) or key in ("attribution_method", "layer")
        }
        inner = ", ".join(f"{key}={_stable_text(item)}" for key, item in settings.items())
        return f"{type(value).__qualname__}({inner})"
    if inspect.isfunction(value) or inspect.ismethod(value):
        owner = getattr(value, "__self__", None)
        prefix = f"{_stable_text(owner)}." if owner is not None else f"{value.__module__}."
        return prefix + value.__qualname__
    text = _ADDRESS.sub("", repr(value))
    if len(text) > _LONG_TEXT:
        return f"{type(value).__qualname__}(sha256={hashlib.sha256(text.encode()).hexdigest()[:16]})"
    return text


def _image_kwargs(method_class: type, canvas: Tensor, batch: Tensor) -> Dict[str, Any]:
    """Settings that suit images for the methods that need some."""
    name = method_class.__name__
    if name == "Occlusion":
        side = max(2, canvas.shape[-1] // 8)
        return {
            "sliding_window_shapes": (canvas.shape[0], side, side),
            "strides": (canvas.shape[0], max(1, side // 2), max(1, side // 2)),
        }
    if name == "IntegratedGradients":
        return {"baselines": torch.zeros_like(batch), "n_steps": 32}
    return {}


def _check_call(method: Any, kwargs: Mapping[str, Any], name: str) -> None:
    """Refuse keyword arguments the call cannot take, before any work (where a signature is readable).

    Raises:
        TypeError: the call ``attribute(inputs, target=..., **kwargs)`` does not fit the signature.
    """
    leading: Tuple[None, ...] = (None,)
    if isinstance(method, (str, type)):
        method_class = _method_class(method)
        function, leading = method_class.attribute, (None, None)
        kwargs = {**_image_kwargs(method_class, torch.zeros(1, 8, 8), torch.zeros(1, 1, 8, 8)), **kwargs}
    else:
        function = method.attribute if isinstance(method, Attribution) else method
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C callables have none: the call itself will tell
        return
    try:
        signature.bind(*leading, target=0, **kwargs)
    except TypeError as error:
        raise TypeError(
            f"baseline {name!r} cannot be called as f(inputs, target=..., **attribute_kwargs): {error}."
        ) from error


@dataclass(frozen=True)
class CaptumBaseline(Replaceable):
    """A Captum baseline: the method, its display name in reports and the keyword arguments of its call.

    The method is called once per canvas, on a batch of one canvas (1 x C x H x W), as
    ``attribute(inputs, target=cls, **attribute_kwargs)``: a method name or class is built
    from the model (``method(model)``) with settings that suit images (Integrated Gradients
    from a black image in 32 steps, Occlusion with windows of an eighth of the image), which
    ``attribute_kwargs`` override; an attribution object's ``attribute`` is called as it is;
    a callable is called as ``f(inputs, target=cls, **attribute_kwargs)``. The result may
    be 1 x C x H x W, C x H x W, 1 x H x W or H x W at the canvas's resolution; channels
    are summed per pixel.

    Attributes:
        attribution: a ``captum.attr`` method name (``"Saliency"``) or class, an attribution
            object (``NoiseTunnel(IntegratedGradients(model))``) or a callable
            ``f(inputs, target=...) -> attribution``.
        name: the display name in reports; by default the method's name (its class for an
            object, e.g. ``"NoiseTunnel(IntegratedGradients)"``, its ``__name__`` for a
            function; a lambda must be named).
        attribute_kwargs: keyword arguments of each call (e.g. ``nt_type``, ``baselines``).

    Raises:
        TypeError: a method of none of these forms, a name that is not a string, or keyword
            arguments the method cannot take.
        ValueError: an unknown method name, an empty or reserved name, a lambda without a
            name, or ``inputs``/``target`` among the keyword arguments.

    Example:
        >>> from captum.attr import IntegratedGradients, NoiseTunnel
        >>> smooth = CaptumBaseline(
        ...     NoiseTunnel(IntegratedGradients(model)),
        ...     name="SmoothGrad-IG",
        ...     attribute_kwargs=dict(nt_type="smoothgrad", nt_samples=8, baselines=blurred_canvas),
        ... )
        >>> search_classes(model, data.search, data.eval, range(10), baselines=["Saliency", smooth])
    """

    attribution: BaselineMethod
    name: str = None  # type: ignore[assignment]  # filled in from the method when not given
    attribute_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        method = self.attribution
        if isinstance(method, (str, type)):
            _method_class(method)
        elif not isinstance(method, Attribution) and not callable(method):
            raise TypeError(f"a baseline must be {_FORMS}; got an object of type {type(method).__name__}.")
        name = _default_name(method) if self.name is None else self.name
        if not isinstance(name, str):
            raise TypeError(f"a baseline's name must be a string, got a {type(name).__name__}.")
        if not name.strip() or name in RESERVED_NAMES:
            raise ValueError(f"a baseline's name must be a non-empty string other than {RESERVED_NAMES}, got {name!r}.")
        if not isinstance(self.attribute_kwargs, Mapping) or not all(isinstance(k, str) for k in self.attribute_kwargs):
            raise TypeError(f"attribute_kwargs of baseline {name!r} must be a mapping of keyword names to values.")
        taken = sorted({"inputs", "target"} & set(self.attribute_kwargs))
        if taken:
            raise ValueError(f"attribute_kwargs of baseline {name!r} may not hold {taken}: each call passes them.")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "attribute_kwargs", dict(self.attribute_kwargs))
        _check_call(method, self.attribute_kwargs, name)

    def __repr__(self) -> str:
        """A text that is the same in every process for the same baseline (no memory addresses)."""
        return (
            f"CaptumBaseline(attribution={_stable_text(self.attribution)}, name={self.name!r}, "
            f"attribute_kwargs={_stable_text(self.attribute_kwargs)})"
        )


def resolve_baselines(baselines: Baselines) -> List[CaptumBaseline]:
    """The baselines a caller wrote, as :class:`CaptumBaseline` objects with unique display names.

    Args:
        baselines: one baseline (a ``captum.attr`` method name or class, an attribution
            object, a callable ``f(inputs, target=...)`` or a :class:`CaptumBaseline`), a
            sequence of them, or a mapping display name -> baseline.

    Returns:
        The baselines in the given order.

    Raises:
        TypeError: an entry of none of these forms.
        ValueError: an unknown method name, a lambda without a name, or two baselines
            with the same display name.

    Example:
        >>> [b.name for b in resolve_baselines(["Saliency", NoiseTunnel(Saliency(model))])]
        ['Saliency', 'NoiseTunnel(Saliency)']
    """
    if isinstance(baselines, Mapping):
        resolved = [
            method.replace(name=name) if isinstance(method, CaptumBaseline) else CaptumBaseline(method, name=name)
            for name, method in baselines.items()
        ]
    else:
        if isinstance(baselines, Tensor):
            raise TypeError(
                "baselines here are the attribution methods the patterns are compared with (e.g. ['Saliency']), "
                "not images."
            )
        single = isinstance(baselines, (str, type, Attribution, CaptumBaseline)) or callable(baselines)
        try:
            entries = [baselines] if single else list(baselines)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"baselines must be {_FORMS}, a sequence of them or a mapping name -> one of them; "
                f"got an object of type {type(baselines).__name__}."
            ) from None
        resolved = [entry if isinstance(entry, CaptumBaseline) else CaptumBaseline(entry) for entry in entries]
    names = [baseline.name for baseline in resolved]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"two baselines are named {duplicates[0]!r} (names {names}); give each its own name, e.g. "
            "CaptumBaseline(method, name=...) or a mapping {name: method}."
        )
    return resolved


@contextlib.contextmanager
def _model_kept(model: Any) -> Iterator[None]:
    """Remove the module hooks a baseline registered and restore every parameter's ``.grad``, also on errors."""
    if not isinstance(model, nn.Module):
        yield
        return
    hooks = [
        (registered, set(registered))
        for module in model.modules()
        for registered in (getattr(module, attribute, None) for attribute in _HOOK_DICTS)
        if isinstance(registered, dict)
    ]
    # The caller's own .grad tensors come back, with their values (a backward() accumulates in place).
    grads = [
        (parameter, parameter.grad, None if parameter.grad is None else parameter.grad.clone())
        for parameter in model.parameters()
    ]
    try:
        yield
    finally:
        for registered, before in hooks:
            for key in [key for key in registered if key not in before]:
                del registered[key]
        with torch.no_grad():
            for parameter, grad, values in grads:
                if grad is not None and values is not None:
                    grad.copy_(values)
                parameter.grad = grad


def _per_canvas(result: Any, canvas: Tensor, name: str) -> Tensor:
    """A baseline's result without its batch dimension, checked to give one score per canvas pixel.

    Raises:
        TypeError: not a tensor (or a tuple of one tensor), or not floating point.
        ValueError: a batch of several, another resolution than the canvas's, or NaN.
    """
    if isinstance(result, (tuple, list)) and len(result) == 1:
        result = result[0]
    if not isinstance(result, Tensor):
        kind = f"a {type(result).__name__}" + (f" of {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise TypeError(
            f"baseline {name!r} returned {kind}; it must return one attribution tensor (1 x C x H x W, C x H x W or "
            "H x W), without convergence deltas."
        )
    if not result.is_floating_point():
        raise TypeError(f"baseline {name!r} returned a {result.dtype} tensor; attributions must be floating point.")
    scores = result.detach()
    if scores.dim() == 4:
        if len(scores) != 1:
            raise ValueError(f"baseline {name!r} returned a batch of {len(scores)} attributions for one canvas.")
        scores = scores[0]
    height, width = canvas.shape[-2:]
    if scores.dim() not in (2, 3) or tuple(scores.shape[-2:]) != (height, width):
        raise ValueError(
            f"baseline {name!r} returned shape {tuple(result.shape)}, not one score per pixel of the "
            f"{height} x {width} canvas (1 x C x H x W, C x H x W or H x W): upsample a layer's attribution to the "
            f"canvas, e.g. LayerAttribution.interpolate(attribution, ({height}, {width}), 'bilinear')."
        )
    try:
        pixel_scores(scores)
    except ValueError as error:
        raise ValueError(f"baseline {name!r}: {error}") from error
    return scores


def captum_attribution(
    model: Callable, method: Union[BaselineMethod, CaptumBaseline], canvas: Tensor, target: int
) -> Tensor:
    """Attribute ``canvas`` to ``target`` with a Captum baseline.

    A method name or class runs with settings that suit images; an attribution object or a
    callable runs with the user's own settings (see :class:`CaptumBaseline`). The model
    runs in eval mode; its training flags, parameters' ``.grad`` and hooks are as they were
    afterwards, also when the method raises.

    Args:
        model: the classifier.
        method: a name from ``captum.attr`` (``"Saliency"``, ``"IntegratedGradients"``,
            ``"Occlusion"``, ...) or the class itself, an attribution object
            (``NoiseTunnel(IntegratedGradients(model))``), a callable
            ``f(inputs, target=...)`` or a :class:`CaptumBaseline`.
        canvas: C x H x W image.
        target: the class.

    Returns:
        The attribution of the canvas without its batch dimension: C x H x W for a
        name or class, and C x H x W, 1 x H x W or H x W for an object or a callable.

    Raises:
        TypeError: a method of none of these forms, or a result that is not a tensor.
        ValueError: an unknown method name, a canvas that is not C x H x W, or a result
            that does not give one score per canvas pixel (upsample a layer's attribution
            with ``LayerAttribution.interpolate``).

    Example:
        >>> attribution = captum_attribution(model, "IntegratedGradients", canvas, target=3)
        >>> pattern = top_k_pattern(attribution, canvas, k=0.05)
    """
    baseline = method if isinstance(method, CaptumBaseline) else CaptumBaseline(method)
    if not isinstance(canvas, Tensor) or canvas.dim() != 3:
        raise ValueError(f"canvas must be a C x H x W tensor, got {getattr(canvas, 'shape', type(canvas).__name__)}.")
    # A leaf that requires grad, so gradient methods do not warn about setting it themselves.
    batch = canvas.detach().unsqueeze(0).clone().requires_grad_(True)
    chosen = baseline.attribution
    with evaluation_mode(model, baseline.name), _model_kept(model):
        if isinstance(chosen, (str, type)):
            method_class = _method_class(chosen)
            kwargs = {**_image_kwargs(method_class, canvas, batch), **baseline.attribute_kwargs}
            result = method_class(model).attribute(batch, target=int(target), **kwargs)
        elif isinstance(chosen, Attribution):
            result = chosen.attribute(batch, target=int(target), **baseline.attribute_kwargs)
        else:
            result = chosen(batch, target=int(target), **baseline.attribute_kwargs)
    return _per_canvas(result, canvas, baseline.name)
