"""JSON files for result types: ``to_json`` / ``from_json`` on top of ``to_dict`` / ``from_dict``."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Optional, Type, TypeVar, Union

import numpy as np

from .io import write_json_atomic

ResultT = TypeVar("ResultT", bound="JsonFile")


class JsonFile:
    """Adds :meth:`to_json` / :meth:`from_json` to a type with ``to_dict`` / ``from_dict``."""

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of the result."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls: Type[ResultT], data: Dict[str, Any]) -> ResultT:
        """Rebuild a result from :meth:`to_dict`'s output."""
        raise NotImplementedError

    def to_json(self, path: Union[str, os.PathLike]) -> None:
        """Write :meth:`to_dict` as JSON, atomically (a reader never sees half a file).

        Args:
            path: the file to write; its folder is created if needed.
        """
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls: Type[ResultT], path: Union[str, os.PathLike]) -> ResultT:
        """Read a result written by :meth:`to_json`.

        Args:
            path: the JSON file.

        Returns:
            The result.

        Raises:
            ValueError: the file is not JSON, or not a result of this type.
            FileNotFoundError: no such file.
        """
        with open(path, encoding="utf-8") as stream:
            try:
                data = json.load(stream)
            except json.JSONDecodeError as error:
                raise ValueError(f"{os.fspath(path)} is not a JSON file: {error}.") from error
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}: {error}") from error


def check_keys(data: Any, keys: Iterable[str], kind: str) -> None:
    """Raise a ValueError unless ``data`` is a dict holding every key in ``keys``."""
    if not isinstance(data, dict):
        raise ValueError(f"a {kind} must be a dict, got {type(data).__name__}.")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"not a {kind}: missing {', '.join(missing)}.")


def float_array(values: Any, shape: Optional[tuple] = None) -> np.ndarray:
    """A float64 array from JSON lists (``NaN`` included), reshaped to ``shape`` if given."""
    result = np.asarray(values, dtype=np.float64)
    return result if shape is None else result.reshape(shape)
