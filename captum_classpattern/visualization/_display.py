"""The display options of the figure functions, grouped: how a panel is drawn beyond its data and size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from .._utils import Replaceable, refuse_both


@dataclass(frozen=True)
class PanelOptions(Replaceable):
    """How :func:`visualize_class_pattern` draws its panel: Captum's display arguments.

    Attributes:
        outlier_perc: the share (percent, in [0, 100)) of total attribution treated as
            outliers and clipped to the top of the colour scale, as in Captum.
        cmap: colour map of the heat map; Captum's default for the sign if ``None``.
        alpha_overlay: opacity of the heat map in ``"blended_heat_map"``, in [0, 1].
        show_colorbar: add a colour bar below heat maps (an empty one keeps panels
            aligned for the other methods).
        title: the panel's title.

    Raises:
        ValueError: ``outlier_perc`` or ``alpha_overlay`` out of range.

    Example:
        >>> visualize_class_pattern(maps[0], canvases[0], "blended_heat_map",
        ...                         display=PanelOptions(alpha_overlay=0.3, title="class 7"))
    """

    outlier_perc: Union[int, float] = 2
    cmap: Optional[Any] = None
    alpha_overlay: float = 0.5
    show_colorbar: bool = False
    title: Optional[str] = None

    def __post_init__(self) -> None:
        perc = self.outlier_perc
        if isinstance(perc, bool) or not isinstance(perc, (int, float)) or not 0 <= perc < 100:
            raise ValueError(f"outlier_perc must be a number in [0, 100), got {perc!r}.")
        if not 0.0 <= float(self.alpha_overlay) <= 1.0:
            raise ValueError(f"alpha_overlay must lie in [0, 1], got {self.alpha_overlay!r}.")


@dataclass(frozen=True)
class TopActivationsOptions(Replaceable):
    """What :func:`plot_top_activations` shows of each unit, and how its region is marked.

    Attributes:
        num_images: images per unit, the columns (>= 1; at most the images given).
        outline_color: colour of the outline of the region above the unit's threshold.

    Raises:
        ValueError: ``num_images`` is not a positive int.

    Example:
        >>> plot_top_activations(model, "features.relu4", result, images, [3, 7],
        ...                      display=TopActivationsOptions(num_images=3, outline_color="red"))
    """

    num_images: int = 5
    outline_color: Any = "yellow"

    def __post_init__(self) -> None:
        count = self.num_images
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"num_images must be a positive int, got {count!r}.")


OLDER_PANEL_KEYWORDS = ("outlier_perc", "cmap", "alpha_overlay", "show_colorbar", "title")
"""``visualize_class_pattern``'s keywords grouped into ``display``."""

OLDER_TOP_ACTIVATIONS_KEYWORDS = ("num_images", "outline_color")
"""``plot_top_activations``'s keywords grouped into ``display``."""


def display_folder(kind: type, names: Tuple[str, ...]) -> Any:
    """A ``fold`` for :func:`accepts_older_keywords`: moves the older keywords ``names`` into ``display``.

    Args:
        kind: the options class, :class:`PanelOptions` or :class:`TopActivationsOptions`.
        names: its older keywords.

    Returns:
        ``fold(older, arguments)``, which raises ``TypeError`` when ``display`` is given as well.
    """

    def fold(older: Dict[str, Any], arguments: Dict[str, Any]) -> None:
        refuse_both(older, arguments, names, "display")
        arguments["display"] = kind(**older)

    return fold


def check_display(display: Any, kind: type) -> None:
    """Refuse display options of another type.

    Raises:
        TypeError: ``display`` is not a ``kind``.
    """
    if not isinstance(display, kind):
        raise TypeError(f"display must be a {kind.__name__}, got {type(display).__name__}.")
