"""The settings surface's shared parts: ``replace`` for frozen settings, and older keywords of grouped signatures."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Dict, Tuple, TypeVar, cast

_R = TypeVar("_R", bound="Replaceable")


class Replaceable:
    """A base of frozen, validated dataclasses: :meth:`replace` makes a changed copy, checked again.

    Example:
        >>> @dataclass(frozen=True)
        ... class Knobs(Replaceable):
        ...     steps: int = 10
        >>> Knobs().replace(steps=20)
        Knobs(steps=20)
    """

    def replace(self: _R, **changes: Any) -> _R:
        """A copy with some fields changed (and checked again), e.g. ``settings.replace(steps=60)``.

        Raises:
            TypeError: an unknown field.
            ValueError: a changed field that fails its check.
        """
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


_F = TypeVar("_F", bound=Callable[..., Any])


def accepts_older_keywords(
    names: Tuple[str, ...], fold: Callable[[Dict[str, Any], Dict[str, Any]], None]
) -> Callable[[_F], _F]:
    """Let a function whose parameters were grouped into settings objects still take the older keywords.

    The wrapper binds a call to the function's current signature, hands the older keywords
    given (among ``names``) and the bound arguments to ``fold``, which moves them into the
    grouped parameters, and calls the function. ``inspect.signature``, ``help`` and the
    docs show the current signature only.

    Args:
        names: the older keywords.
        fold: ``fold(older, arguments)`` updates ``arguments`` (name -> value, as bound)
            with the older keywords' values; it raises ``TypeError`` when both spellings
            are given.

    Returns:
        The decorator.
    """

    def decorate(function: _F) -> _F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            older = {name: kwargs.pop(name) for name in names if name in kwargs}
            if not older:
                return function(*args, **kwargs)
            bound = signature.bind_partial(*args, **kwargs)
            fold(older, bound.arguments)
            return function(*bound.args, **bound.kwargs)

        return cast(_F, wrapper)

    return decorate


def refuse_both(older: Dict[str, Any], arguments: Dict[str, Any], old: Tuple[str, ...], new: str) -> None:
    """Refuse a call that gives a grouped parameter both ways (``new`` and one of ``old``).

    Raises:
        TypeError: both spellings were given.
    """
    given = [name for name in old if name in older]
    if given and new in arguments:
        raise TypeError(f"pass {new}= or the older {', '.join(given)}=, not both.")
