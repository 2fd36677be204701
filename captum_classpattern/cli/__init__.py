"""The ``classpattern`` command line: ``demo``, ``search`` and ``scan``.

``python -m captum_classpattern.cli`` runs it too.
"""

from ._main import build_parser, main

__all__ = [
    "main",
    "build_parser",
]
