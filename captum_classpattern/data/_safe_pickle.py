"""Reading CIFAR-10's pickled batches without running code: an unpickler that knows only what the format holds.

A pickle can name any importable callable and have it called while loading, so
``pickle.load`` on a file from the internet runs whatever the file asks for. A CIFAR-10
batch (torchvision's ``cifar-10-batches-py``) holds one dict of strings, a list of ints, a
list of file names and a NumPy ``uint8`` array; the only callables its pickle names rebuild
that array and its dtype. Every other name is refused before anything is called.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from typing import Any, Callable, Dict, Tuple

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that refers to something outside the format it should hold; nothing it names was called."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``codecs.encode`` for the one use a protocol-2 pickle makes of it: bytes written as latin-1 text."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused: a bytes object encoded as {encoding!r} (only latin-1 is expected).")
    return codecs.encode(text, encoding)


def _numpy_function(name: str) -> Callable[..., Any]:
    """A private NumPy array-rebuilding function (its module moved from ``numpy.core`` to ``numpy._core`` in 2.0)."""
    for module in ("numpy._core", "numpy.core"):
        try:
            for part in ("multiarray", "numeric"):
                found = getattr(importlib.import_module(f"{module}.{part}"), name, None)
                if found is not None:
                    return found
        except ImportError:
            continue
    raise pickle.UnpicklingError(f"this NumPy has no {name} to rebuild the arrays with.")


def _allowed() -> Dict[Tuple[str, str], Callable[[], Any]]:
    """The names a CIFAR-10 batch may refer to, each with how to get the object it stands for."""
    allowed: Dict[Tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = lambda: _numpy_function("_reconstruct")
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = lambda: _numpy_function("_frombuffer")
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, tuples, strings, numbers and NumPy arrays only.

    Args:
        stream: the open binary file.
        source: names the file in error messages.
    """

    def __init__(self, stream: io.BufferedIOBase, source: str) -> None:
        super().__init__(stream, encoding="latin1")
        self.source = source
        self.allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        """Return the object for an allowed name; refuse any other before it is imported.

        Raises:
            UnsafePickleError: a name outside the CIFAR-10 format.
        """
        make = self.allowed.get((module, name))
        if make is None:
            raise UnsafePickleError(
                f"{self.source} is not a CIFAR-10 batch: its pickle refers to {module}.{name}, but a batch holds "
                "only dicts, lists, strings and NumPy arrays; it was not loaded, as unpickling it could run code. "
                "Use the files of the original cifar-10-python.tar.gz."
            )
        return make()

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent references, which the format never uses.

        Raises:
            UnsafePickleError: always.
        """
        raise UnsafePickleError(f"{self.source} is not a CIFAR-10 batch: it holds a persistent reference.")


def load_cifar_batch(path: str) -> Dict[str, Any]:
    """Read one CIFAR-10 batch file with :class:`RestrictedUnpickler` and check its layout.

    Args:
        path: a file of ``cifar-10-batches-py`` (``data_batch_1`` ... or ``test_batch``).

    Returns:
        The batch dict, with at least ``"data"`` (an N x 3072 array) and ``"labels"`` (N ints).

    Raises:
        UnsafePickleError: the file names anything outside the format (it could run code); a
            subclass of ``pickle.UnpicklingError``.
        ValueError: the file is not a pickle of a CIFAR-10 batch (damaged, or another layout).
    """
    with open(path, "rb") as stream:
        try:
            entry = RestrictedUnpickler(stream, path).load()
        except UnsafePickleError:
            raise
        except Exception as error:  # a truncated or foreign file fails in many ways; all mean "not a batch"
            detail = " ".join(str(error).split())[:120]
            raise ValueError(
                f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {detail}): the file is damaged or "
                "of another format; extract cifar-10-python.tar.gz again."
            ) from error
    if isinstance(entry, dict) and "data" not in entry and b"data" in entry:
        entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not (
        isinstance(data, np.ndarray)
        and isinstance(labels, list)
        and data.shape == (len(labels), 3072)
        and all(isinstance(label, int) for label in labels)
    ):
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: expected a dict with 'data' (N x 3072 uint8) and 'labels' (N ints); "
            "extract cifar-10-python.tar.gz again."
        )
    return entry
