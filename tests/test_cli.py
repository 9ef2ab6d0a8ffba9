"""The `voxlab` console script dispatches each command to the main(argv) its Makefile target runs."""
import importlib

import pytest

from voxlab.cli.main import COMMANDS, main


def test_every_command_names_a_main():
    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_dispatch_passes_the_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    assert "--exp" in capsys.readouterr().out


def test_unknown_command(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main([]) == 0 and "train" in capsys.readouterr().out
