"""Shared set-up of the command-line tests: a user's model factory and weights in the current folder."""

import pytest
import torch

from captum_classpattern.models import SmallCNN


@pytest.fixture
def install_user_model(tmp_path, monkeypatch):
    """A function that writes ``<module>.py`` (``build()`` returns a SmallCNN) and seeded weights ``model.pt``.

    ``tmp_path`` becomes the current folder and importable, as a user's project would be.
    """

    def install(module: str, in_channels: int, num_classes: int, width: int) -> None:
        torch.manual_seed(0)
        torch.save(SmallCNN(in_channels, num_classes, width).state_dict(), tmp_path / "model.pt")
        factory = (
            "from captum_classpattern.models import SmallCNN\n\n\n"
            f"def build():\n    return SmallCNN({in_channels}, {num_classes}, {width})\n"
        )
        (tmp_path / f"{module}.py").write_text(factory)
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))

    return install
