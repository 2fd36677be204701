"""``--weights`` in the formats people have: safetensors, state dicts, training checkpoints, wrapped models.

Each accepted format is loaded through the real command line (the search itself is replaced
by a stub that keeps the model it is given); each refused one is one line on stderr with exit
status 2 and no traceback, found before any work.
"""

from __future__ import annotations

import re
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from captum_classpattern.cli import _search as cli_search
from captum_classpattern.cli import main
from captum_classpattern.cli._loaders import WRAPPER_KEYS
from captum_classpattern.models import SmallCNN

FACTORY = textwrap.dedent(
    """
    from captum_classpattern.models import SmallCNN


    def build():
        return SmallCNN(1, 10, 8)
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A factory module, importable as ``weights_nets:build``."""
    path = tmp_path_factory.mktemp("weights")
    (path / "weights_nets.py").write_text(FACTORY)
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))


@pytest.fixture(scope="module")
def state():
    """The trained-looking weights every accepted file holds (any seed other than the factory's)."""
    torch.manual_seed(1)
    return SmallCNN(1, 10, 8).state_dict()


def _prefixed(state, prefix):
    return {prefix + key: value for key, value in state.items()}


ACCEPTED = {
    "safetensors": ("w.safetensors", lambda sd: ("safetensors", sd)),
    "safetensors without the extension": ("w.bin", lambda sd: ("safetensors", sd)),
    "state dict": ("w.pt", lambda sd: sd),
    **{
        f"checkpoint under {key!r}": (
            "ckpt.pth",
            lambda sd, key=key: {key: sd, "epoch": 7, "optimizer": {"state": {}, "param_groups": []}},
        )
        for key in WRAPPER_KEYS
    },
    "DataParallel's module. prefix": ("dp.pt", lambda sd: _prefixed(sd, "module.")),
    "prefix inside a checkpoint": ("dp_ckpt.pt", lambda sd: {"model_state_dict": _prefixed(sd, "module.")}),
    "torch.compile's _orig_mod. prefix": ("compiled.pt", lambda sd: _prefixed(sd, "_orig_mod.")),
    "both prefixes": ("both.pt", lambda sd: _prefixed(sd, "module._orig_mod.")),
    "safetensors with the prefix": ("dp.safetensors", lambda sd: ("safetensors", _prefixed(sd, "module."))),
}


def _write(path, content):
    if isinstance(content, tuple) and content[0] == "safetensors":
        save_file({key: value.contiguous() for key, value in content[1].items()}, str(path))
    else:
        torch.save(content, path)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_each_accepted_format_loads_the_same_weights(kind, folder, state, tmp_path, monkeypatch, capsys):
    name, content = ACCEPTED[kind]
    _write(tmp_path / name, content(state))
    loaded = {}

    def keep_the_model(model, *args, **kwargs):
        loaded.update(model.state_dict())
        return 0

    monkeypatch.setattr(cli_search, "run_search", keep_the_model)
    argv = ["search", "--model", "weights_nets:build", "--weights", str(tmp_path / name)]
    assert main(argv + ["--out", str(tmp_path / "out"), "--no-progress"]) == 0, capsys.readouterr().err
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


REFUSED = {
    # torch.save(model): refused, since weights are read with weights_only=True.
    "a whole pickled model": (
        lambda sd: SmallCNN(1, 10, 8),
        r"holds Python objects besides tensors, e.g. a whole pickled model",
    ),
    "a dict without tensors": (
        lambda sd: {"epoch": 3, "lr": 0.1},
        r"holds no tensors \(top-level keys found: \['epoch', 'lr'\]\); save model.state_dict\(\)",
    ),
    "an unknown wrapper key": (
        lambda sd: {"weights": sd, "epoch": 3},
        r"no state dict under any of the keys \['state_dict', 'model_state_dict', 'model', 'net'\]; "
        r"top-level keys found: \['weights', 'epoch'\]",
    ),
    "two wrapper keys": (lambda sd: {"model": sd, "state_dict": sd}, r"holds tensors under several keys"),
    "a list": (lambda sd: list(sd.values()), r"holds a list, not a state_dict"),
    "an empty dict": (lambda sd: {}, r"holds no tensors \(top-level keys found: \[\]\)"),
}


def _assert_one_line_fault(code, err, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["search", "scan"])
@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_each_refused_format_is_one_line_and_exit_2(kind, command, folder, state, tmp_path, capsys):
    content, pattern = REFUSED[kind]
    torch.save(content(state), tmp_path / "w.pt")
    argv = [command, "--model", "weights_nets:build", "--weights", str(tmp_path / "w.pt"), "--no-progress"]
    _assert_one_line_fault(main(argv + ["--out", str(tmp_path / "out")]), capsys.readouterr().err, pattern)
    assert not (tmp_path / "out").exists()  # found before any work: no --out folder either


def test_a_damaged_safetensors_file_is_one_line(folder, state, tmp_path, capsys):
    save_file(state, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    argv = ["search", "--model", "weights_nets:build", "--weights", str(tmp_path / "w.safetensors")]
    code = main(argv + ["--out", str(tmp_path / "out"), "--no-progress"])
    _assert_one_line_fault(code, capsys.readouterr().err, r"is not a usable safetensors file: .*truncated or damaged")


def test_a_prefix_the_model_itself_has_is_kept(folder, tmp_path, monkeypatch, capsys):
    """A model whose own keys start with ``module.`` gets the file's keys as they are."""
    (tmp_path / "wrapped_nets.py").write_text(
        "import torch\nfrom captum_classpattern.models import SmallCNN\n\n\n"
        "def build():\n    return torch.nn.DataParallel(SmallCNN(1, 10, 8))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(2)
    state = torch.nn.DataParallel(SmallCNN(1, 10, 8)).state_dict()
    torch.save(state, tmp_path / "w.pt")
    loaded = {}
    monkeypatch.setattr(cli_search, "run_search", lambda model, *a, **k: loaded.update(model.state_dict()) or 0)
    argv = ["search", "--model", "wrapped_nets:build", "--weights", str(tmp_path / "w.pt"), "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert all(torch.equal(loaded[key], state[key]) for key in state)
