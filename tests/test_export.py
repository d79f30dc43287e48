"""A voice exported from a run that started from another voice (``--init``) goes on as that
voice did: its other models, its voicing detector, its default vocoder and its WaveNet's
temperature, unless the export says otherwise."""

import torch
from test_trainer import COMMON, VOCODER, corpus  # noqa: F401 (corpus is a fixture)
from voices import make_tiny_voice

from tts.train.__main__ import main
from tts.voice import load_model, load_voice, save_model, set_default_vocoder, set_temperature
from tts.vocoder.voicing import VoicingConfig, VoicingDetector


def origin_voice(path):
    """A tiny voice with settings of its own: a voicing detector, Griffin-Lim by default, and a
    WaveNet temperature other than the default."""
    voice = make_tiny_voice(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        save_model(voice, "voicing", VoicingDetector(VoicingConfig(strength=2.0)))
    set_default_vocoder(voice, "griffin-lim")
    set_temperature(voice, 0.7)
    return voice


def assert_same_model(voice, origin, name):
    a, b = load_model(voice, name), load_model(origin, name)
    assert a.config == b.config, name
    for key, value in b.state_dict().items():
        assert torch.equal(a.state_dict()[key], value), (name, key)


def test_an_acoustic_run_exports_a_voice_that_speaks_as_its_origin(corpus, tmp_path, capsys):
    origin = origin_voice(tmp_path / "origin")
    run = tmp_path / "run"
    assert main(["parallel", "--data", str(corpus), "--out", str(run), "--init", str(origin),
                 "--set", *COMMON, "max_steps=1"]) == 0
    assert main(["export", str(run), "--to", str(tmp_path / "voice")]) == 0
    voice = load_voice(tmp_path / "voice", require=("acoustic", "vocoder", "voicing"))
    assert voice.default_vocoder == "griffin-lim" and voice.model("vocoder").config.temperature == 0.7
    for name in ("vocoder", "voicing"):
        assert_same_model(tmp_path / "voice", origin, name)
    assert not torch.equal(voice.acoustic.state_dict()["embed.weight"],
                           load_model(origin, "acoustic").state_dict()["embed.weight"])  # the run's

    # What the user gives wins over what is carried.
    assert main(["export", str(run), "--to", str(tmp_path / "other"), "--default-vocoder", "wavenet",
                 "--temperature", "0.9"]) == 0
    other = load_voice(tmp_path / "other", require=("vocoder", "voicing"))
    assert other.default_vocoder == "wavenet" and other.model("vocoder").config.temperature == 0.9

    # A voice folder that exists keeps its own settings; only the run's model changes.
    set_default_vocoder(tmp_path / "other", "griffin-lim")
    assert main(["export", str(run), "--to", str(tmp_path / "other")]) == 0
    kept = load_voice(tmp_path / "other", require=("vocoder",))
    assert kept.default_vocoder == "griffin-lim" and kept.model("vocoder").config.temperature == 0.9


def test_a_resumed_vocoder_run_still_carries_its_origin(corpus, tmp_path, capsys):
    origin = origin_voice(tmp_path / "origin")
    run = tmp_path / "run"
    sets = [*COMMON, *VOCODER[:2]]  # the model's shape is the voice's
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--init", str(origin),
                 "--set", *sets, "max_steps=1"]) == 0
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--set", *sets, "max_steps=2"]) == 0
    assert "step 2" in capsys.readouterr().out
    assert main(["export", str(run), "--to", str(tmp_path / "voice")]) == 0
    voice = load_voice(tmp_path / "voice", require=("acoustic", "vocoder", "voicing"))
    assert voice.default_vocoder == "griffin-lim" and voice.model("vocoder").config.temperature == 0.7
    for name in ("acoustic", "voicing"):
        assert_same_model(tmp_path / "voice", origin, name)
    # --alone: the run's model and nothing the origin carries (what a GPU session brings back).
    assert main(["export", str(run), "--to", str(tmp_path / "alone"), "--alone"]) == 0
    assert sorted(p.name for p in (tmp_path / "alone").iterdir()) == ["config.json", "vocoder.safetensors"]


def test_an_origin_that_is_gone_leaves_the_run_s_model_alone_with_a_warning(corpus, tmp_path, capsys):
    origin = origin_voice(tmp_path / "origin")
    run = tmp_path / "run"
    assert main(["parallel", "--data", str(corpus), "--out", str(run), "--init", str(origin),
                 "--set", *COMMON, "max_steps=1"]) == 0
    for path in origin.iterdir():
        path.unlink()
    origin.rmdir()
    capsys.readouterr()
    assert main(["export", str(run), "--to", str(tmp_path / "voice")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and str(origin) in err
    assert set(load_voice(tmp_path / "voice", require=("acoustic",)).config["models"]) == {"acoustic"}
