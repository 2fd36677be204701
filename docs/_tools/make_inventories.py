"""Write the small intersphinx inventories in ``docs/_intersphinx/``.

The docs build with ``-W`` on machines without internet, where intersphinx cannot fetch
``objects.inv`` from python.org, pytorch.org or captum.ai (a failed fetch is a warning, so
the build would fail). Instead ``conf.py`` points intersphinx at these local inventories:
they list only the outside names our docstrings and signatures refer to, with their
addresses in the projects' published docs, so links still lead to the real pages.

Add a name here when a docstring starts referring to a new outside object, then run::

    .venv/bin/python -m docs._tools.make_inventories

Set ``CLASSPATTERN_DOCS_ONLINE=1`` when building to fetch the projects' full inventories
instead (needs internet).
"""

from __future__ import annotations

import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(os.path.dirname(HERE), "_intersphinx")

# project: (title, version, [(name, domain:role, page#anchor)]); "$" in the address stands
# for the name, as in Sphinx's own inventories.
INVENTORIES = {
    "python": (
        "Python",
        "3",
        [
            ("int", "py:class", "library/functions.html#int"),
            ("float", "py:class", "library/functions.html#float"),
            ("bool", "py:class", "library/functions.html#bool"),
            ("str", "py:class", "library/stdtypes.html#str"),
            ("list", "py:class", "library/stdtypes.html#list"),
            ("tuple", "py:class", "library/stdtypes.html#tuple"),
            ("dict", "py:class", "library/stdtypes.html#dict"),
            ("None", "py:data", "library/constants.html#None"),
            ("ValueError", "py:exception", "library/exceptions.html#$"),
            ("TypeError", "py:exception", "library/exceptions.html#$"),
            ("RuntimeError", "py:exception", "library/exceptions.html#$"),
            ("FileNotFoundError", "py:exception", "library/exceptions.html#$"),
            ("KeyError", "py:exception", "library/exceptions.html#$"),
            ("UserWarning", "py:exception", "library/exceptions.html#$"),
            ("os.PathLike", "py:class", "library/os.html#$"),
            ("argparse.Namespace", "py:class", "library/argparse.html#$"),
            ("dataclasses.dataclass", "py:function", "library/dataclasses.html#$"),
            ("typing.Any", "py:data", "library/typing.html#$"),
            ("typing.Optional", "py:data", "library/typing.html#$"),
            ("typing.Union", "py:data", "library/typing.html#$"),
            ("typing.Callable", "py:data", "library/typing.html#$"),
            ("typing.Tuple", "py:data", "library/typing.html#$"),
            ("typing.List", "py:class", "library/typing.html#$"),
            ("typing.Dict", "py:class", "library/typing.html#$"),
            ("typing.Sequence", "py:class", "library/typing.html#$"),
            ("typing.Mapping", "py:class", "library/typing.html#$"),
            ("typing.Iterable", "py:class", "library/typing.html#$"),
            ("typing.Iterator", "py:class", "library/typing.html#$"),
            ("collections.abc.Sequence", "py:class", "library/collections.abc.html#$"),
            ("collections.abc.Mapping", "py:class", "library/collections.abc.html#$"),
            ("collections.abc.Iterable", "py:class", "library/collections.abc.html#$"),
            ("collections.abc.Callable", "py:class", "library/collections.abc.html#$"),
        ],
    ),
    "torch": (
        "PyTorch",
        "stable",
        [
            ("torch.Tensor", "py:class", "tensors.html#$"),
            ("torch.device", "py:class", "tensor_attributes.html#$"),
            ("torch.dtype", "py:class", "tensor_attributes.html#$"),
            ("torch.Generator", "py:class", "generated/torch.Generator.html#$"),
            ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
            ("torch.nn.Sequential", "py:class", "generated/torch.nn.Sequential.html#$"),
            ("torch.nn.Conv2d", "py:class", "generated/torch.nn.Conv2d.html#$"),
            ("torch.nn.Linear", "py:class", "generated/torch.nn.Linear.html#$"),
            ("torch.nn.CrossEntropyLoss", "py:class", "generated/torch.nn.CrossEntropyLoss.html#$"),
            ("torch.optim.Adam", "py:class", "generated/torch.optim.Adam.html#$"),
            ("torch.utils.data.DataLoader", "py:class", "data.html#$"),
            ("torch.utils.data.Dataset", "py:class", "data.html#$"),
            ("torch.distributed", "py:module", "distributed.html#module-torch.distributed"),
        ],
    ),
    "captum": (
        "Captum",
        "0.9",
        [
            ("captum.attr.Attribution", "py:class", "base_classes.html#$"),
            ("captum.attr.GradientAttribution", "py:class", "base_classes.html#$"),
            ("captum.attr.PerturbationAttribution", "py:class", "base_classes.html#$"),
            ("captum.attr.Saliency", "py:class", "saliency.html#$"),
            ("captum.attr.IntegratedGradients", "py:class", "integrated_gradients.html#$"),
            ("captum.attr.InputXGradient", "py:class", "input_x_gradient.html#$"),
            ("captum.attr.GuidedBackprop", "py:class", "guided_backprop.html#$"),
            ("captum.attr.Occlusion", "py:class", "occlusion.html#$"),
            ("captum.attr.NoiseTunnel", "py:class", "noise_tunnel.html#$"),
            ("captum.attr.visualization.visualize_image_attr", "py:function", "utilities.html#$"),
            ("captum.attr.visualization.visualize_image_attr_multiple", "py:function", "utilities.html#$"),
            ("captum.robust.PGD", "py:class", "robust.html#$"),
            ("captum.robust.FGSM", "py:class", "robust.html#$"),
        ],
    ),
    "numpy": (
        "NumPy",
        "stable",
        [
            ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$"),
        ],
    ),
    "matplotlib": (
        "Matplotlib",
        "stable",
        [
            ("matplotlib.figure.Figure", "py:class", "api/_as_gen/matplotlib.figure.Figure.html#$"),
            ("matplotlib.axes.Axes", "py:class", "api/_as_gen/matplotlib.axes.Axes.html#$"),
            ("matplotlib.colors.Colormap", "py:class", "api/_as_gen/matplotlib.colors.Colormap.html#$"),
            ("matplotlib.pyplot.show", "py:function", "api/_as_gen/matplotlib.pyplot.show.html#$"),
        ],
    ),
}


def inventory_bytes(title: str, version: str, entries) -> bytes:
    """One inventory in Sphinx's version-2 format: a text header, then zlib-compressed lines."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {title}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    # "name domain:role priority address display-name"; "-" displays the name itself.
    body = "".join(f"{name} {role} 1 {address} -\n" for name, role, address in sorted(entries))
    return header.encode() + zlib.compress(body.encode(), 9)


def main() -> None:
    """Write one ``<project>.inv`` per entry of :data:`INVENTORIES`."""
    os.makedirs(TARGET, exist_ok=True)
    for project, (title, version, entries) in INVENTORIES.items():
        path = os.path.join(TARGET, f"{project}.inv")
        with open(path, "wb") as stream:
            stream.write(inventory_bytes(title, version, entries))
        print(f"wrote {path} ({len(entries)} names)")


if __name__ == "__main__":
    main()
