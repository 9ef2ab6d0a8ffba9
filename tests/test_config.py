"""Config composition, overrides and every validation error; every real experiment resolves."""
import re
import sys
from pathlib import Path

import pytest

from voxlab.config import (EXPERIMENTS_DIR, ConfigError, available_experiments, compose, instantiate, locate,
                           parse_overrides)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "fam" / "scale").mkdir(parents=True)
    (tmp_path / "base.yaml").write_text("seed: 1\noptim: {lr: 0.001, betas: [0.9, 0.99]}\ntrainer: {max_steps: 10}\n")
    (tmp_path / "fam" / "base.yaml").write_text(
        "extends: ../base.yaml\nmodel: {layers: 4, hidden: 256, fsq: {dim: 256, quantize: true}, free: null}\n")
    (tmp_path / "fam" / "scale" / "tiny.yaml").write_text("model: {layers: 2, hidden: 32}\n")
    (tmp_path / "fam" / "d256.yaml").write_text("extends: base.yaml\n")
    (tmp_path / "fam" / "d4.yaml").write_text(
        "extends: d256.yaml\nmodel: {fsq: {dim: 4}, layers: '${add:${model.hidden},6}'}\n")
    return tmp_path


def test_compose_layers_in_order(tree):
    cfg = compose("d4", "tiny", ["optim.lr=1e-4", "trainer.max_steps=100"], root=tree)
    assert cfg.model.fsq.dim == 4 and cfg.model.fsq.quantize is True
    assert cfg.model.hidden == 32  # from the scale preset
    assert cfg.optim.lr == pytest.approx(1e-4) and cfg.trainer.max_steps == 100
    assert cfg.experiment == "d4" and cfg.scale == "tiny"


def test_interpolation_sees_the_scale(tree):
    assert compose("d4", "tiny", root=tree).model.layers == 38  # tiny hidden 32 + 6


def test_unknown_key_names_the_closest(tree):
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'.*did you mean 'optim.lr'"):
        compose("d4", None, ["optim.lrr=1"], root=tree)


def test_unknown_key_in_an_experiment_file_names_the_file(tree):
    (tree / "fam" / "bad.yaml").write_text("extends: base.yaml\nmodel: {hiden: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'model.hiden'.*'model.hidden'"):
        compose("bad", None, root=tree)


def test_unknown_experiment_lists_available(tree):
    with pytest.raises(ConfigError, match=r"unknown experiment 'd5'.*Available: d256, d4"):
        compose("d5", None, root=tree)


def test_wrong_type_names_key_and_type(tree):
    with pytest.raises(ConfigError, match=r"'model.layers' expects int, got str"):
        compose("d4", None, ["model.layers=abc"], root=tree)
    with pytest.raises(ConfigError, match=r"'trainer.max_steps' expects int, got float"):
        compose("d4", None, ["trainer.max_steps=1.5"], root=tree)
    with pytest.raises(ConfigError, match=r"'model.fsq.quantize' expects bool"):
        compose("d4", None, ["model.fsq.quantize=3"], root=tree)


def test_int_is_accepted_for_float(tree):
    assert compose("d4", None, ["optim.lr=1"], root=tree).optim.lr == 1


def test_unknown_scale(tree):
    with pytest.raises(ConfigError, match="unknown scale 'huge'.*tiny"):
        compose("d4", "huge", root=tree)


def test_free_form_section_accepts_new_keys(tree):
    assert compose("d4", None, ["model.free.anything=2"], root=tree).model.free.anything == 2


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides(["optim.lr"])


def test_instantiate_builds_target(monkeypatch):
    monkeypatch.setenv("VOXLAB_ALLOW_TARGETS", "datetime.timedelta,nowhere")
    obj = instantiate({"_target_": "datetime.timedelta", "seconds": 3})
    assert obj.total_seconds() == 3
    with pytest.raises(ConfigError, match="cannot be imported"):
        instantiate({"_target_": "nowhere.Thing"})


def test_target_outside_the_project_is_refused_before_import(tmp_path, monkeypatch):
    (tmp_path / "sideeffect_mod.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("VOXLAB_ALLOW_TARGETS", raising=False)
    for target in ("subprocess.run", "sideeffect_mod.X", "voxlabx.Thing"):
        with pytest.raises(ConfigError, match="outside the project.*VOXLAB_ALLOW_TARGETS"):
            instantiate({"_target_": target, "args": ["true"]})
    assert not (tmp_path / "ran").exists() and "sideeffect_mod" not in sys.modules
    monkeypatch.setenv("VOXLAB_ALLOW_TARGETS", "sideeffect_mod")
    assert locate("sideeffect_mod.X") == 1
    assert locate("models.voxcpm.VoxCPMBackbone").__name__ == "VoxCPMBackbone"


def test_every_target_in_experiments_is_allowed(monkeypatch):
    monkeypatch.delenv("VOXLAB_ALLOW_TARGETS", raising=False)
    found = []
    for path in Path(EXPERIMENTS_DIR).rglob("*.yaml"):
        found += re.findall(r"_target_:\s*([A-Za-z_][\w.]*)", path.read_text())
    assert found
    for target in set(found) - {"null"}:
        assert callable(locate(target)), target


@pytest.mark.parametrize("override,key", [("callbacks.ema._target_=voxlab.config.os", "callbacks.ema._target_"),
                                          ("callbacks.tts_samples._target_=voxlab.cli.lm.build_from_config",
                                           "callbacks.tts_samples._target_"),
                                          ("datamodule._target_=os.system", "datamodule._target_")])
def test_a_run_refuses_a_bad_target_before_it_reads_data_or_trains_anything(override, key, monkeypatch):
    """Issue 30 item 18: every `_target_` is located when the run's config is read, so a callback's bad
    target is one line naming its key before the tiny text LM or the VAE are touched."""
    from voxlab.cli import train as train_cli

    monkeypatch.delenv("VOXLAB_ALLOW_TARGETS", raising=False)
    monkeypatch.setattr(train_cli, "ensure_embedded_corpus", lambda cfg: pytest.fail("went on to the data"))
    with pytest.raises(ConfigError, match=re.escape(key)):
        train_cli.prepare("d256s9", "tiny", [override])


def test_enumerated_option_typo_is_refused():
    with pytest.raises(ConfigError, match=r"nonfinite.policy='skp'.*skip, stop.*did you mean 'skip'"):
        compose("d256s9", "tiny", ["nonfinite.policy=skp"])
    assert compose("d256s9", "tiny", ["nonfinite.policy=stop"]).nonfinite.policy == "stop"


@pytest.mark.parametrize("value", ["0", "-4"])
def test_non_positive_batch_size_is_refused(value):
    with pytest.raises(ConfigError, match=f"data.max_batch_size={value}: must be a positive"):
        compose("d256s9", "tiny", [f"data.max_batch_size={value}"])


@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_every_experiment_resolves_at_every_scale(scale):
    exps = available_experiments()
    for name in exps:
        cfg = compose(name, scale)
        assert cfg.experiment == name
        assert cfg.module._target_ and cfg.datamodule._target_


def test_only_classes_meant_for_configs_are_built_from_one(tmp_path, monkeypatch, capsys):
    """Inside the project's packages a `_target_` builds only what voxlab.config.BUILDABLE lists
    (by where it is defined): a project function (one that empties a folder), a module, or a class
    not meant for configs is refused in one line naming the key, before it is called."""
    from voxlab.cli.train import main as train_main
    from voxlab.config import build

    monkeypatch.delenv("VOXLAB_ALLOW_TARGETS", raising=False)
    folder = tmp_path / "my_lm"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"mine")
    lm = f"model.lm_init.path={folder}"
    cases = {"datamodule._target_": ["voxlab.cli.lm.build_from_config", "voxlab.cli.lm.pretrain_text_lm",
                                     "datamodules.tts.main", "voxlab.cli.train.resolve_resume"],
             "module._target_": ["voxlab.runs.remove_stale_temporaries", "callbacks.run_folder.RunFolder"],
             "callbacks.ema._target_": ["voxlab.config.os", "voxlab.config.OmegaConf"]}
    for key, targets in cases.items():
        for target in targets:
            cfg = compose("d256s9", "tiny", [f"{key}={target}", lm])
            with pytest.raises(ConfigError, match=rf"^{re.escape(key)}='{re.escape(target)}' is not a class meant"):
                if key.startswith("callbacks."):
                    instantiate(cfg.callbacks.ema)
                else:
                    build(cfg, key.split(".")[0])
    assert train_main(["--exp", "d256s9", "--scale", "tiny", "datamodule._target_=voxlab.cli.lm.build_from_config",
                       lm]) == 2
    err = capsys.readouterr().err
    assert "datamodule._target_='voxlab.cli.lm.build_from_config' is not a class" in err and "Traceback" not in err
    assert [p.name for p in folder.iterdir()] == ["weights.bin"]
    # what configs name is built, under any name that reaches it
    assert locate("datamodules.shards.ShardTTSDataModule") is locate("datamodules.shards.data.ShardTTSDataModule")
