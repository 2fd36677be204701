"""The documentation's tools: figure scripts, the offline inventories and the check of a finished build.

Run each from the repository root as a module (so that it imports the checkout's package,
and its siblings, without touching ``sys.path``)::

    python -m docs._tools.check_rendered docs/_build/html   # what ``make docs`` runs after the build
    python -m docs._tools.make_figures                      # docs/_static/method.png
    python -m docs._tools.scan_figure                       # docs/_static/scan_planted_vs_natural.png
    python -m docs._tools.blend_figure                      # docs/_static/scan_blend_probe.png
    python -m docs._tools.cifar10_figure                    # docs/_static/cifar10_patterns.png
    python -m docs._tools.make_inventories                  # docs/_intersphinx/*.inv

Nothing here runs during the Sphinx build.
"""
