"""The layering of README "Layout" holds: import-linter's contracts in setup.cfg (no exceptions
listed) pass, and they name every module of `voxlab/` and `eval/` (a new module must be given
its layer, or nothing would check it)."""
import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contract() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["importlinter:contract:layers"]


def test_import_contracts_are_kept():
    assert "ignore_imports" not in _contract()
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_every_module_of_the_shared_packages_has_a_layer():
    named = set(re.split(r"[\s|:]+", _contract()["layers"].strip()))
    for package in ("voxlab", "eval"):
        for child in sorted((ROOT / package).iterdir()):
            is_module = child.suffix == ".py" or (child / "__init__.py").is_file()
            if is_module and child.name != "__init__.py":
                assert f"{package}.{child.stem}" in named, f"{package}/{child.name} has no layer in setup.cfg"
