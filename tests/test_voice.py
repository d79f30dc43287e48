import json

import numpy as np
import pytest
import torch

from tts.audio import AudioConfig
from tts.attention_model import AttentionConfig, AttentionModel
from tts.voice import VoiceError, load_model, load_voice, read_config, save_model, set_temperature
from tts.vocoder.wavenet import WaveNet, WaveNetConfig

TINY_ACOUSTIC = AttentionConfig(embed_dim=16, encoder_channels=16, encoder_layers=1, prenet_dim=16,
                               decoder_channels=16, attention_dim=16, decoder_dilations=(1,), converter_dilations=(1,),
                               postnet_channels=16, postnet_layers=1)
TINY_VOCODER = WaveNetConfig(n_layers=2, residual_channels=8, skip_channels=8, output_channels=8, max_dilation=2,
                             cond_channels=8)


@pytest.fixture
def voice(tmp_path):
    torch.manual_seed(0)
    acoustic, vocoder = AttentionModel(TINY_ACOUSTIC).eval(), WaveNet(TINY_VOCODER).eval()
    save_model(tmp_path / "v", "acoustic", acoustic)
    save_model(tmp_path / "v", "vocoder", vocoder)
    return tmp_path / "v", acoustic, vocoder


def test_roundtrip_is_bit_identical(voice):
    path, acoustic, vocoder = voice
    assert sorted(p.name for p in path.iterdir()) == ["acoustic.safetensors", "config.json", "vocoder.safetensors"]
    v = load_voice(path)
    assert v.audio == AudioConfig()
    ids = torch.tensor([[10, 20, 30, 1]])
    with torch.no_grad():
        a, b = acoustic.generate(ids, max_steps=5), v.acoustic.generate(ids, max_steps=5)
    assert torch.equal(a.mel, b.mel) and torch.equal(a.alignment, b.alignment)
    mel = torch.rand(2, 80)
    np.testing.assert_array_equal(vocoder.vocode(mel, seed=1), v.wavenet.vocode(mel, seed=1))
    for key, value in vocoder.state_dict().items():
        assert torch.equal(value, v.wavenet.state_dict()[key])


def test_wrapped_models_are_saved_without_prefixes(tmp_path):
    class Wrapper(torch.nn.Module):  # the shape of DDP / torch.compile wrappers
        def __init__(self, m):
            super().__init__()
            self.module = m
    save_model(tmp_path / "v", "vocoder", Wrapper(WaveNet(TINY_VOCODER)))
    load_model(tmp_path / "v", "vocoder")


def test_partial_voice_and_missing_model(tmp_path):
    save_model(tmp_path / "v", "vocoder", WaveNet(TINY_VOCODER))
    assert list(load_voice(tmp_path / "v", require=("vocoder",)).stored) == ["vocoder"]
    with pytest.raises(VoiceError, match="no acoustic model"):
        load_voice(tmp_path / "v")


def test_refuses_damaged_voices(voice, tmp_path):
    path, _, _ = voice
    weights = path / "vocoder.safetensors"
    blob = weights.read_bytes()

    weights.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(VoiceError, match="checksum"):
        load_voice(path)

    config = json.loads((path / "config.json").read_text())
    config["models"]["vocoder"].pop("sha256")  # without the checksum, safetensors itself refuses
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(VoiceError, match="cannot read"):
        load_voice(path)

    tampered = bytearray(blob)
    tampered[-1] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    config["models"]["vocoder"]["sha256"] = "0" * 64
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(VoiceError, match="checksum"):
        load_voice(path)

    weights.unlink()
    with pytest.raises(VoiceError, match="missing vocoder.safetensors"):
        load_voice(path)


def test_refuses_wrong_version_shape_and_folder(voice, tmp_path):
    path, _, _ = voice
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "format": 99}))
    with pytest.raises(VoiceError, match="format 99"):
        read_config(path)

    bigger = dict(config["models"]["vocoder"]["config"], residual_channels=16)
    config["models"]["vocoder"]["config"] = bigger
    config["models"]["vocoder"].pop("sha256")
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(VoiceError, match="has shape"):
        load_model(path, "vocoder")

    (path / "config.json").write_text("{not json")
    with pytest.raises(VoiceError, match="not valid JSON"):
        load_voice(path)
    with pytest.raises(VoiceError, match="not found"):
        load_voice(tmp_path / "nowhere")
    with pytest.raises(VoiceError, match="unknown model"):
        save_model(tmp_path / "x", "bogus", WaveNet(TINY_VOCODER))


def test_voice_files_are_readable_by_everyone(voice):
    """An installed voice must be readable by every user, whatever mode the writer made."""
    for path in voice[0].iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_the_sampling_temperature_is_set_in_place_and_checked(voice, tmp_path):
    path, _, vocoder = voice
    weights = (path / "vocoder.safetensors").read_bytes()
    set_temperature(path, 0.25)
    loaded = load_model(path, "vocoder")
    assert loaded.config.temperature == 0.25
    assert (path / "vocoder.safetensors").read_bytes() == weights  # a setting, not new weights
    # The generated logits are the network's divided by the temperature.
    np.testing.assert_allclose(loaded.export_weights()["out2_b"],
                               vocoder.out2.bias.detach().numpy() / 0.25, rtol=1e-6)
    before = (path / "config.json").read_text()
    with pytest.raises(VoiceError, match="temperature"):
        set_temperature(path, 0.0)
    assert (path / "config.json").read_text() == before
    save_model(tmp_path / "acoustic-only", "acoustic", AttentionModel(TINY_ACOUSTIC))
    with pytest.raises(VoiceError, match="no vocoder"):
        set_temperature(tmp_path / "acoustic-only", 0.5)
