"""A procedural data set with known concept masks, for dissection without Broden.

Each image shows one shape (circle, square, triangle, cross, ring) in one saturated colour
on a textured grey ground (plain, stripes, dots, checker). Every pixel's concepts are known,
so network dissection can be checked against the truth, and the shape is a class label a
small CNN learns in seconds. Nothing is downloaded; an item depends only on ``seed`` and
its index.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from .._utils import check_positive_int

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
COLORS: Dict[str, Tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.10, 0.72, 0.20),
    "blue": (0.12, 0.25, 0.92),
    "yellow": (0.95, 0.85, 0.10),
}
TEXTURES: Tuple[str, ...] = ("plain", "stripes", "dots", "checker")


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` centred at ``(cx, cy)`` with radius ``r`` (pixel units)."""
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if shape == "triangle":  # apex up, base at cy + 0.7 r
        height = (dy + r) / (1.7 * r)  # 0 at the apex, 1 at the base
        return (height >= 0) & (height <= 1) & (np.abs(dx) <= height * r)
    if shape == "cross":
        arm = 0.3 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "ring":
        distance = np.sqrt(dx**2 + dy**2)
        return (distance <= r) & (distance >= 0.55 * r)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}.")


def _texture(texture: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0/1 map of the ground's second tone."""
    if texture == "plain":
        return np.zeros_like(x)
    if texture == "stripes":
        period = rng.uniform(4.0, 7.0)
        angle = rng.choice([0.0, 0.5, 0.25, 0.75]) * np.pi
        phase = x * np.cos(angle) + y * np.sin(angle) + rng.uniform(0, period)
        return (np.floor(2 * phase / period) % 2).astype(float)
    if texture == "dots":
        period = rng.uniform(5.0, 7.0)
        ox, oy = rng.uniform(0, period, size=2)
        ux = (x + ox) % period - period / 2
        uy = (y + oy) % period - period / 2
        return (ux**2 + uy**2 <= (0.28 * period) ** 2).astype(float)
    if texture == "checker":
        size = rng.integers(3, 6)
        ox, oy = rng.integers(0, size, size=2)
        return ((np.floor((x + ox) / size) + np.floor((y + oy) / size)) % 2).astype(float)
    raise ValueError(f"unknown texture {texture!r}; choose from {TEXTURES}.")


class ConceptDataset(Dataset):
    """Images of coloured shapes on textured ground, with per-pixel concept masks.

    Concept ids: 0 is "no concept" (``"-"``), then the shapes, the colours and the textures,
    in that order (``concept_names``; ``concept_categories`` gives each one's category).
    ``dataset[i]`` is ``(image, masks, image_labels)``, the item
    :func:`~captum_classpattern.dissection.dissect` reads:

    - ``image``: 3 x H x W float32 in [0, 1];
    - ``masks``: K x H x W int64 concept ids, one channel per pixel-level category
      (``mask_categories``): the shape and colour channels mark the object's pixels, the
      texture channel (with ``texture_level="pixel"``) the visible ground;
    - ``image_labels``: multi-hot float32 of length ``num_concepts``; with
      ``texture_level="image"`` the texture is an image-level concept here instead of a
      mask channel (as NetDissect-Lite treats textures and scenes).

    The class of image ``i`` is its shape (``labels``, ``class_names``), balanced: image
    ``i`` shows shape ``i % num_classes``. :meth:`classification` gives an
    ``(image, label)`` data set for training.

    Args:
        size: number of images.
        image_size: height and width in pixels (at least 16).
        seed: images depend only on ``seed`` and their index.
        texture_level: ``"pixel"`` (a texture mask channel) or ``"image"`` (image labels).
        noise: standard deviation of the Gaussian pixel noise.
        shapes: subset of the shapes to draw (default all five); they are the classes.

    Raises:
        ValueError: a setting out of range or an unknown shape.

    Example:
        >>> data = ConceptDataset(200, seed=0)
        >>> image, masks, image_labels = data[0]
        >>> data.concept_names[int(masks[0].max())], data.class_names[int(data.labels[0])]
        ('circle', 'circle')
    """

    category_names: Tuple[str, ...] = ("shape", "color", "texture")

    def __init__(
        self,
        size: int = 500,
        image_size: int = 32,
        seed: int = 0,
        *,
        texture_level: str = "pixel",
        noise: float = 0.03,
        shapes: Optional[Sequence[str]] = None,
    ) -> None:
        check_positive_int(size, "size")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}.")
        if texture_level not in ("pixel", "image"):
            raise ValueError(f"texture_level must be 'pixel' or 'image', got {texture_level!r}.")
        if not 0 <= noise < 0.5:
            raise ValueError(f"noise must lie in [0, 0.5), got {noise!r}.")
        chosen = tuple(shapes) if shapes is not None else SHAPES
        unknown = [s for s in chosen if s not in SHAPES]
        if unknown or len(chosen) < 2 or len(set(chosen)) != len(chosen):
            raise ValueError(f"shapes must be at least two distinct names from {SHAPES}, got {shapes!r}.")
        self.size, self.image_size, self.seed = size, image_size, seed
        self.texture_level, self.noise, self.shapes = texture_level, float(noise), chosen
        self.colors = tuple(COLORS)
        self.textures = TEXTURES
        self.concept_names: List[str] = ["-", *self.shapes, *self.colors, *self.textures]
        self.concept_categories: List[Optional[str]] = (
            [None] + ["shape"] * len(self.shapes) + ["color"] * len(self.colors) + ["texture"] * len(self.textures)
        )
        self.mask_categories: Tuple[str, ...] = ("shape", "color", "texture")[: 3 if texture_level == "pixel" else 2]
        self.class_names: Tuple[str, ...] = self.shapes
        self._tensors: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None

    @property
    def num_concepts(self) -> int:
        """Number of concept ids, including 0 ("no concept")."""
        return len(self.concept_names)

    @property
    def num_classes(self) -> int:
        """Number of classes (the shapes)."""
        return len(self.shapes)

    @property
    def labels(self) -> Tensor:
        """Class label (shape index) of every image, int64."""
        return torch.arange(self.size) % self.num_classes

    def __len__(self) -> int:
        return self.size

    def attributes(self, index: int) -> Dict[str, object]:
        """The drawing parameters of image ``index``: shape, color, texture, center, radius.

        Args:
            index: the image.

        Returns:
            A dict with keys ``shape``, ``color``, ``texture``, ``center`` (x, y in pixels)
            and ``radius`` (pixels).

        Raises:
            IndexError: ``index`` out of range.
        """
        params = self._draw(index)
        del params["rng"]
        return params

    def _draw(self, index: int) -> Dict[str, Any]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} images.")
        index %= self.size
        rng = np.random.default_rng([self.seed, index])
        side = self.image_size
        radius = rng.uniform(0.2, 0.32) * side
        centre = rng.uniform(radius + 1, side - radius - 1, size=2)
        return {
            "shape": self.shapes[index % self.num_classes],
            "color": self.colors[rng.integers(len(self.colors))],
            "texture": self.textures[rng.integers(len(self.textures))],
            "center": (float(centre[0]), float(centre[1])),
            "radius": float(radius),
            "rng": rng,  # continues the image's own random stream (texture, tones, noise)
        }

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor]:
        params = self._draw(index)
        rng: np.random.Generator = params["rng"]
        side = self.image_size
        y, x = np.mgrid[0:side, 0:side].astype(float) + 0.5
        cx, cy = params["center"]
        obj = _shape_mask(str(params["shape"]), x, y, cx, cy, float(params["radius"]))
        # Grey ground with a slight tint, so colour concepts stay on the object.
        base = rng.uniform(0.3, 0.7)
        contrast = rng.uniform(0.18, 0.3) * rng.choice([-1.0, 1.0])
        tint = rng.uniform(-0.03, 0.03, size=3)
        second = _texture(str(params["texture"]), x, y, rng)
        ground = (base + contrast * second)[None] + tint[:, None, None]
        colour = np.asarray(COLORS[str(params["color"])]) + rng.uniform(-0.06, 0.06, size=3)
        image = np.where(obj[None], colour[:, None, None], ground)
        image = image + rng.normal(0.0, self.noise, size=image.shape)
        masks = np.zeros((len(self.mask_categories), side, side), dtype=np.int64)
        masks[0][obj] = self.concept_names.index(str(params["shape"]))
        masks[1][obj] = self.concept_names.index(str(params["color"]))
        image_labels = np.zeros(self.num_concepts, dtype=np.float32)
        texture_id = self.concept_names.index(str(params["texture"]))
        if self.texture_level == "pixel":
            masks[2][~obj] = texture_id
        else:
            image_labels[texture_id] = 1.0
        return (
            torch.from_numpy(np.clip(image, 0.0, 1.0).astype(np.float32)),
            torch.from_numpy(masks),
            torch.from_numpy(image_labels),
        )

    def tensors(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """All items stacked: ``(images, masks, image_labels, labels)`` (cached).

        Returns:
            images N x 3 x H x W, masks N x K x H x W, image_labels N x num_concepts,
            labels N.
        """
        if self._tensors is None:
            items = [self[i] for i in range(self.size)]
            self._tensors = (
                torch.stack([item[0] for item in items]),
                torch.stack([item[1] for item in items]),
                torch.stack([item[2] for item in items]),
                self.labels,
            )
        return self._tensors

    def classification(self) -> TensorDataset:
        """An ``(image, label)`` data set of the same images, for training a classifier."""
        images, _, _, labels = self.tensors()
        return TensorDataset(images, labels)
