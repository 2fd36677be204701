"""``--classes``: class numbers or class names, resolved against the data's names, and the mapping printed."""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

from ._errors import UsageError, listing

ClassSpec = Union[int, str]
"""An item of ``--classes``: a class number, or a class name (a folder name of the data)."""


def parse_classes(text: Optional[str]) -> Optional[List[ClassSpec]]:
    """The items of ``--classes`` (``None`` when not given): class numbers, or class names to look up.

    An item that reads as an integer is a class number; anything else is a class name,
    resolved against the data's names by :func:`resolve_classes`.

    Raises:
        UsageError: an empty item, or an item listed twice.
    """
    if text is None:
        return None
    classes: List[ClassSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise UsageError(
                f"--classes takes comma-separated class numbers or names such as 0,3,7 or cat,dog; got {text!r}."
            )
        try:
            classes.append(int(item))
        except ValueError:
            classes.append(item)
    repeated = sorted({str(c) for c in classes if classes.count(c) > 1})
    if repeated:
        raise UsageError(f"--classes lists {', '.join(repeated)} more than once.")
    return classes


def resolve_classes(classes: List[ClassSpec], names: Sequence[str], data_spec: str) -> List[int]:
    """Class numbers for the items of ``--classes``, names looked up in the data's class names.

    Raises:
        UsageError: an item that is neither a class number nor a name of the data, or a class
            named twice (by number and by name).
    """
    resolved = []
    for item in classes:
        if isinstance(item, int):
            resolved.append(item)
        elif item in names:
            resolved.append(list(names).index(item))
        else:
            raise UsageError(
                f"--classes {item!r} is neither a class number nor a class name of --data {data_spec}; its classes "
                f"are {listing([f'{i}={name}' for i, name in enumerate(names)], 10)}."
            )
    repeated = sorted({c for c in resolved if resolved.count(c) > 1})
    if repeated:
        raise UsageError(f"--classes names class {', '.join(map(str, repeated))} more than once (by number and name).")
    return resolved


def class_mapping(classes: Sequence[int], names: Sequence[str]) -> str:
    """The line that says which class number is which name, e.g. ``classes: 0 = airplane, 3 = cat``."""
    return "classes: " + ", ".join(f"{c} = {names[c]}" if c < len(names) else str(c) for c in classes)
