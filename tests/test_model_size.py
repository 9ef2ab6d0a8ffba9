"""A model too big for the machine is refused from its config, before anything is allocated or
created, in one line naming the setting behind its largest tensor (voxlab.cli.model_size)."""
from __future__ import annotations

import pytest

from conftest import tts_overrides
from voxlab.cli.model_size import check_model_size
from voxlab.cli.train import main
from voxlab.config import ConfigError, compose


@pytest.mark.parametrize("exp, override, key", [
    ("d256s9", "model.lm.intermediate_size=${mul:100000,100000}", "model.lm.intermediate_size=10000000000"),
    ("d256s9", "model.dit.hidden_dim=1000000", "model.dit.hidden_dim=1000000"),
    ("audiovae", "model.istft.dim=${mul:1000,1000}", "model.istft.dim=1000000"),
])
def test_a_model_that_cannot_fit_is_one_line_naming_the_key(tts_assets, tmp_path, capsys, exp, override, key):
    root, corpus, vae_dir = tts_assets
    args = tts_overrides(root, corpus, vae_dir, steps=1)[:3] if exp == "d256s9" else [f"data.root={corpus}"]
    assert main(["--exp", exp, "--scale", "tiny", *args, f"run.root={tmp_path / 'runs'}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}: the model would hold") and "Traceback" not in err, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("exp", ["d256s9", "audiovae"])
def test_the_bound_is_this_machines_memory(exp):
    """Both kinds of module are sized (neither skipped): what fits here is refused on a smaller machine."""
    cfg = compose(exp, "tiny")
    check_model_size(cfg)  # the tiny model fits
    with pytest.raises(ConfigError, match=r"more than this machine's 9.54e-07 GB of memory \(largest: "):
        check_model_size(cfg, memory=1024)
