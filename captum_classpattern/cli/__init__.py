"""The ``classpattern`` command line: ``demo``, ``search`` and ``scan``.

``python -m captum_classpattern.cli`` runs it too. Each run writes its JSON report, its figure
and a self-contained HTML page (``report.html`` / ``scan.html``) together. ``--weights`` takes a
``.safetensors`` file, a ``torch.save`` state dict or a checkpoint that wraps one. Progress bars
go to stderr when it is a terminal (``--no-progress`` hides them). Every input is checked before any work;
an expected fault is one line on stderr with exit status 2 (``--debug`` adds the
traceback), a bug keeps its traceback (exit status 1). ``demo`` and ``search`` checkpoint
finished chunks of classes into ``OUT/checkpoints/`` and continue with ``--resume``.
"""

from ._main import build_parser, main

__all__ = [
    "main",
    "build_parser",
]
