"""The documentation's sources (built by Sphinx, see ``conf.py``).

A package only so that its tools run as modules from the repository root, e.g.
``python -m docs._tools.check_rendered``; Sphinx does not import it.
"""
