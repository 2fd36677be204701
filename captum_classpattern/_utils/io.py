"""Atomic files: a reader never sees a half-written report, figure or weights file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Union


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, mode) as stream:
            stream.write(data)
        # mkstemp creates the file readable by its owner only; give it the permissions an
        # ordinary open() would have (0o666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json_atomic(path: Union[str, os.PathLike], obj: Any) -> None:
    """Serialise ``obj`` as indented JSON and write it atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure_atomic(fig: Any, path: Union[str, os.PathLike], **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (render to memory, then :func:`write_atomic`)."""
    buffer = io.BytesIO()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    fig.savefig(buffer, format=fmt, **kwargs)
    write_atomic(path, buffer.getvalue())
