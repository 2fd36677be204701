"""The output folder: checked before any work, and results that appear together or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, List, Sequence, Tuple

from ._errors import UsageError

Writer = Callable[[str], None]


def prepare_out(path: str) -> str:
    """Make sure ``--out`` can be written, without creating it: a run that fails before writing leaves nothing.

    An existing folder is tested by creating and removing a temporary file in it; a missing
    one by creating and removing a temporary folder in its nearest existing parent. The
    folder itself is created when the run first writes into it (:func:`publish`, or the
    search's checkpoints).

    Args:
        path: the ``--out`` argument.

    Returns:
        ``path``.

    Raises:
        UsageError: ``path`` is a file, cannot be created, or is not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} is a file: give a folder (it is created when missing).")
    if os.path.isdir(path):
        try:
            handle, probe = tempfile.mkstemp(dir=path, prefix=".classpattern-probe-")
            os.close(handle)
            os.remove(probe)
        except OSError as error:
            raise UsageError(
                f"--out {path} is not writable ({error.strerror or error}); choose another folder."
            ) from error
        return path
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {path}: cannot create the folder ({parent} is not a folder); choose another.")
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".classpattern-probe-"))
    except OSError as error:
        raise UsageError(
            f"--out {path}: cannot create the folder ({error.strerror or error}); choose another."
        ) from error
    return path


def publish(folder: str, files: Sequence[Tuple[str, Writer]]) -> List[str]:
    """Write several files so that they appear together, in order, or not at all.

    ``folder`` is created when missing. Every file is first written by its writer to a
    temporary name in ``folder``; only when all are written are they renamed into place, in
    the given order (put the file that announces the others, e.g. the report, last). When a
    writer fails the temporary files are removed and nothing is renamed.

    Args:
        folder: the output folder.
        files: ``(name, writer)`` pairs; ``writer(path)`` writes the file to ``path`` (whose
            extension is the name's).

    Returns:
        The paths written.
    """
    staged: List[Tuple[str, str]] = []
    os.makedirs(folder, exist_ok=True)  # created only now, when the run writes its results
    try:
        for name, write in files:
            stem, extension = os.path.splitext(name)
            temporary = os.path.join(folder, f".{stem}.{os.getpid()}.partial{extension}")
            staged.append((temporary, os.path.join(folder, name)))
            write(temporary)
        for temporary, final in staged:
            os.replace(temporary, final)
    except BaseException:
        for temporary, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        raise
    return [final for _, final in staged]
