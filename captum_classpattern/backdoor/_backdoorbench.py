"""BackdoorBench's ``attack_result.pt``: the attacked classifier, taking images in [0, 1], and what the file records.

BackdoorBench (Wu et al. 2022, https://github.com/SCLBD/BackdoorBench) saves every attacked
model as one ``torch.save`` dict with the keys ``model_name``, ``num_classes``, ``model`` (the
state dict), ``data_path``, ``img_size`` (``[H, W, C]``), ``clean_data`` (the data set's name),
``bd_train`` and ``bd_test`` (the poisoned samples, as the state of its dataset class). Its
models take images normalised by per-data-set constants; :func:`load_backdoorbench` puts that
normalisation in front of the network, so the module it returns takes [0, 1] images like every
model of this package, and goes into :func:`scan` or :class:`ClassPattern` unchanged.

The file is read with ``torch.load(weights_only=True)``: besides tensors it may hold only
the NumPy arrays and scalars and the PIL images BackdoorBench's data records consist of;
any other name in the pickle is refused before anything is loaded.
"""

from __future__ import annotations

import importlib
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import Normalize

from ..data import Split
from ..models import PreActResNet18

BACKDOORBENCH_NORMALIZATION: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "gtsrb": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "celeba": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "tiny": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "mnist": ((0.5,), (0.5,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Per-channel ``(mean, std)`` BackdoorBench normalises each data set with (its ``clean_data`` names).

These are the constants of BackdoorBench's ``get_dataset_normalization``; GTSRB and CelebA
are not normalised there (mean 0, std 1)."""

_IMAGE_SIZES = {
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "gtsrb": (32, 32, 3),
    "celeba": (64, 64, 3),
    "tiny": (64, 64, 3),
    "mnist": (28, 28, 1),
    "imagenet": (224, 224, 3),
}  # BackdoorBench's get_input_shape, used when a file has no img_size (a defense_result.pt)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    # BackdoorBench builds these with torchvision's constructor and num_classes only, so the
    # same constructor here gives the same parameter names; no pretrained weights are fetched.
    return lambda classes: getattr(torchvision.models, name)(weights=None, num_classes=classes)


_BUILDERS: Dict[str, Callable[[int], nn.Module]] = {
    "preactresnet18": lambda classes: PreActResNet18(num_classes=classes, in_channels=3, width=64),
    **{
        name: _torchvision(name)
        for name in (
            "resnet18",
            "resnet34",
            "resnet50",
            "vgg11",
            "vgg16",
            "vgg19",
            "vgg19_bn",
            "densenet121",
            "densenet161",
            "mobilenet_v3_large",
            "efficientnet_b0",
            "efficientnet_b3",
            "convnext_tiny",
        )
    },
}

BACKDOORBENCH_MODELS = tuple(_BUILDERS)
"""The ``model_name`` values :func:`load_backdoorbench` can build.

``"preactresnet18"`` (BackdoorBench's default, the network of its CIFAR tables) becomes the
package's :class:`~captum_classpattern.models.PreActResNet18` at width 64, whose parameter
names are BackdoorBench's; the others are the torchvision architectures BackdoorBench builds
with their constructor and ``num_classes``. Not supported: its ViTs (wrapped in a resize
layer), ``resnext29`` and ``senet18`` (its own modules)."""

REQUIRED_KEYS = ("model_name", "num_classes", "model")
"""Keys every BackdoorBench result file has (``attack_result.pt`` and ``defense_result.pt``)."""

STRIPPED_PREFIXES = ("module.", "_orig_mod.")
"""State-dict prefixes left by ``nn.DataParallel`` and ``torch.compile``, removed when every key has one."""


@dataclass(frozen=True, eq=False)
class BackdoorBenchRecord:
    """What a BackdoorBench result file says about its model, beside the weights.

    Attributes:
        path: the file read.
        model_name: BackdoorBench's architecture name, e.g. ``"preactresnet18"``.
        num_classes: the classifier's outputs.
        dataset: the clean data set's name (``clean_data``), e.g. ``"cifar10"``.
        image_size: ``(channels, height, width)`` of the images the model was trained on.
        mean: per-channel mean the model's input is normalised with.
        std: per-channel standard deviation of that normalisation.
        backdoor_test: the backdoor test set the file holds (images N x C x H x W in [0, 1],
            already triggered, with the labels the attack wants: the target class), or
            ``None`` when the file keeps none in memory (BackdoorBench can save its images
            as separate PNG files instead) or it was not asked for.
        original_labels: the true labels of :attr:`backdoor_test`'s images, or ``None``.
        poison_rate: share of training items the attack changed (from ``bd_train``), or
            ``None`` when the file does not record it.
    """

    path: str
    model_name: str
    num_classes: int
    dataset: str
    image_size: Tuple[int, int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    backdoor_test: Optional[Split]
    original_labels: Optional[Tensor]
    poison_rate: Optional[float]

    @property
    def target(self) -> Optional[int]:
        """The attack's target class when all backdoor test items share one label (all-to-one), else ``None``."""
        if self.backdoor_test is None or len(self.backdoor_test) == 0:
            return None
        labels = self.backdoor_test.labels.unique()
        return int(labels[0]) if labels.numel() == 1 else None


def _allowed_globals() -> List[Tuple[Any, str]]:
    """The names BackdoorBench's data records use besides tensors, with the objects they stand for.

    NumPy arrays and scalars (under the module names of NumPy 1 and 2, as a file may have been
    written with either) and PIL images, which BackdoorBench keeps its poisoned samples as.
    Each only rebuilds data from bytes.
    """
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # NumPy 1
        multiarray = importlib.import_module("numpy.core.multiarray")
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    allowed: List[Tuple[Any, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(reconstruct, f"{module}._reconstruct"), (scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25: one class per dtype
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType"):
                allowed.append((getattr(dtypes, name), f"numpy.dtypes.{name}"))
    allowed.append((Image.Image, "PIL.Image.Image"))
    return allowed


def _check_globals(path: str, allowed: Sequence[str]) -> None:
    """Refuse a file whose pickle names anything outside ``allowed``, before loading it."""
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:  # torch < 2.5: torch.load's own weights-only check below still refuses them
        return
    try:
        names = finder(path)
    except Exception:  # not a torch file at all: torch.load below says so
        return
    refused = sorted(set(names) - set(allowed))
    if refused:
        raise ValueError(
            f"{path} was not loaded: its pickle refers to {', '.join(refused[:5])}, which a BackdoorBench result "
            "file does not hold (only tensors, NumPy arrays and PIL images), and unpickling it could run code. "
            "Load it with torch.load(weights_only=False) only if you trust it, and save the parts needed."
        )


def _read(path: str) -> Mapping[str, Any]:
    """The dict in the file, read with ``weights_only=True`` plus the names of :func:`_allowed_globals`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (give the attack_result.pt BackdoorBench wrote).")
    allowed = _allowed_globals()
    _check_globals(path, [name for _, name in allowed])
    scope = getattr(torch.serialization, "safe_globals", None)
    try:
        with warnings.catch_warnings(), scope(allowed) if scope is not None else nullcontext():
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged or foreign file fails in many ways; all mean "unusable"
        detail = " ".join(str(error).split())[:200]
        raise ValueError(
            f"{path} is not a readable BackdoorBench result file ({type(error).__name__}: {detail}); reading the "
            "NumPy arrays and images of its data records needs torch >= 2.6."
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}, not the dict of a BackdoorBench result file.")
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        found = ", ".join(repr(key) for key in list(content)[:8])
        raise ValueError(
            f"{path} is not a BackdoorBench result file: it lacks {', '.join(repr(k) for k in missing)} "
            f"(keys found: {found}). A plain state dict needs its architecture: build the model and load it."
        )
    return content


def _strip_prefixes(state: Mapping[str, Any]) -> Dict[str, Any]:
    """The state dict without a prefix every key carries (``module.``, ``_orig_mod.``, or both)."""
    result = dict(state)
    changed = True
    while changed and result:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if all(isinstance(key, str) and key.startswith(prefix) for key in result):
                result = {key[len(prefix) :]: value for key, value in result.items()}
                changed = True
    return result


def _build(path: str, name: Any, classes: Any, state: Any) -> nn.Module:
    """The named architecture with the file's weights loaded, or a ValueError that says what does not fit."""
    if name not in _BUILDERS:
        raise ValueError(
            f"{path}: model_name {name!r} is not supported; supported BackdoorBench architectures: "
            f"{', '.join(BACKDOORBENCH_MODELS)}."
        )
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 2:
        raise ValueError(f"{path}: num_classes must be an int >= 2, got {classes!r}.")
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        raise ValueError(f"{path}: 'model' must be the model's state dict (names to tensors).")
    net = _BUILDERS[name](int(classes))
    state = _strip_prefixes(state)
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or resized:
        problems = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", resized))
            if keys
        ]
        raise ValueError(
            f"{path}: the weights do not fit BackdoorBench's {name} with {classes} classes ({'; '.join(problems)})."
        )
    net.load_state_dict(state)
    return net


def _normalization(path: str, dataset: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    if dataset not in BACKDOORBENCH_NORMALIZATION:
        raise ValueError(
            f"{path}: no known normalisation for data set {dataset!r}; pass dataset= one of "
            f"{', '.join(BACKDOORBENCH_NORMALIZATION)} (the data set the model was trained on)."
        )
    return BACKDOORBENCH_NORMALIZATION[dataset]


def _image_size(content: Mapping[str, Any], dataset: str) -> Tuple[int, int, int]:
    """``(C, H, W)`` from the file's ``img_size`` (``[H, W, C]``), else BackdoorBench's size for the data set."""
    size = content.get("img_size")
    if isinstance(size, (list, tuple)) and len(size) >= 2 and all(isinstance(v, (int, np.integer)) for v in size):
        channels = int(size[2]) if len(size) > 2 else 3
        return channels, int(size[0]), int(size[1])
    height, width, channels = _IMAGE_SIZES.get(dataset, (32, 32, 3))
    return channels, height, width


def _as_image_tensor(image: Any, size: Tuple[int, int, int]) -> Optional[Tensor]:
    """A C x H x W float image in [0, 1] from a PIL image or an H x W (x C) uint8 array, resized to ``size``."""
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        return None
    pixels = torch.from_numpy(np.array(image, copy=True)).float() / 255
    pixels = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
    if tuple(pixels.shape[1:]) != size[1:]:
        # BackdoorBench resizes each test image to img_size before its normalisation.
        pixels = nn.functional.interpolate(pixels[None], size=size[1:], mode="bilinear", antialias=True)[0]
    return pixels.clamp(0, 1)


def _backdoor_test(content: Mapping[str, Any], size: Tuple[int, int, int]) -> Tuple[Optional[Split], Optional[Tensor]]:
    """The triggered test images kept in memory in ``bd_test``, with their backdoor and true labels."""
    record = content.get("bd_test")
    container = record.get("bd_data_container") if isinstance(record, Mapping) else None
    items = container.get("data_dict") if isinstance(container, Mapping) else None
    if not isinstance(items, Mapping) or not items:
        return None, None
    images, targets, originals = [], [], []
    for key in sorted(items):
        entry = items[key]
        # In memory an entry is (image, backdoor label, true label); saved to disk it is a dict
        # with the PNG's path, which this file does not hold.
        if not isinstance(entry, (tuple, list)) or len(entry) < 3:
            return None, None
        pixels = _as_image_tensor(entry[0], size)
        if pixels is None or pixels.shape[0] != size[0]:
            return None, None
        images.append(pixels)
        targets.append(int(entry[1]))
        originals.append(int(entry[2]))
    return Split(torch.stack(images), torch.tensor(targets)), torch.tensor(originals)


def _poison_rate(content: Mapping[str, Any]) -> Optional[float]:
    record = content.get("bd_train")
    indicator = record.get("poison_indicator") if isinstance(record, Mapping) else None
    if indicator is None:
        return None
    values = np.asarray(indicator, dtype=float)
    return float(values.mean()) if values.size else None


def load_backdoorbench(
    path: Union[str, os.PathLike[str]], *, dataset: Optional[str] = None, backdoor_test: bool = True
) -> Tuple[nn.Module, BackdoorBenchRecord]:
    """Load the classifier of a BackdoorBench ``attack_result.pt`` as a model that takes images in [0, 1].

    The architecture is built from ``model_name`` (:data:`BACKDOORBENCH_MODELS`), the state
    dict loaded into it (a ``module.`` or ``_orig_mod.`` prefix on every key is removed), and
    BackdoorBench's normalisation of the data set (:data:`BACKDOORBENCH_NORMALIZATION`) put in
    front of it: ``model = nn.Sequential(Normalize(mean, std), net)``, in evaluation mode on
    the CPU, so ``model[1]`` is the bare network. The model is what :func:`scan`,
    :class:`~captum_classpattern.ClassPattern` and the ``classpattern`` command take. A
    ``defense_result.pt`` (the model without data records) loads too, given ``dataset``.

    The file is read with ``torch.load(weights_only=True)``, allowing only the NumPy and PIL
    objects BackdoorBench's data records hold; a file that names anything else is refused
    unread. The clean data itself is not in the file (only ``data_path`` on the machine that
    made it): load it with :func:`~captum_classpattern.data.load_cifar10` or your own loader.

    Args:
        path: the ``attack_result.pt`` (or ``defense_result.pt``).
        dataset: the data set's name, for the normalisation; ``None``: the file's
            ``clean_data``. One of ``cifar10``, ``cifar100``, ``gtsrb``, ``celeba``, ``tiny``
            (Tiny-ImageNet), ``mnist``, ``imagenet``.
        backdoor_test: read the backdoor test set the file keeps in memory into
            :attr:`BackdoorBenchRecord.backdoor_test` (``False`` skips it).

    Returns:
        ``(model, record)``: the model and a :class:`BackdoorBenchRecord`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a BackdoorBench result file (the message names the keys found), a file
            that refers to objects besides tensors, arrays and images, an unsupported
            ``model_name`` (the message lists the supported ones), weights that do not fit the
            architecture, or an unknown data set.

    Example:
        >>> model, record = load_backdoorbench("record/badnet_0_1/attack_result.pt")
        >>> record.model_name, record.dataset, record.target
        ('preactresnet18', 'cifar10', 0)
        >>> test = load_cifar10(os.environ["CLASSPATTERN_CIFAR10"], limit=1000)
        >>> result = scan(model, test.images[:500], test.labels[:500])
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike of a str, got {type(path).__name__}.")
    content = _read(path)
    name = dataset if dataset is not None else content.get("clean_data")
    if not isinstance(name, str):
        raise ValueError(f"{path} names no data set (no 'clean_data'); pass dataset=, e.g. dataset='cifar10'.")
    mean, std = _normalization(path, name)
    net = _build(path, content["model_name"], content["num_classes"], content["model"])
    model = nn.Sequential(Normalize(list(mean), list(std)), net).eval()
    size = _image_size(content, name)
    images, originals = _backdoor_test(content, size) if backdoor_test else (None, None)
    record = BackdoorBenchRecord(
        path=path,
        model_name=str(content["model_name"]),
        num_classes=int(content["num_classes"]),
        dataset=name,
        image_size=size,
        mean=tuple(mean),
        std=tuple(std),
        backdoor_test=images,
        original_labels=originals,
        poison_rate=_poison_rate(content),
    )
    return model, record
