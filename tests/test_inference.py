"""Speaking without PyTorch: the numpy acoustic model and WaveNet conditioning (tts.inference,
tts.vocoder.inference) give the torch models' numbers, and the CPU pipeline on the numba
kernel never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tts.inference import ParallelConfig, ParallelSpeaker
from tts.parallel_model import ParallelModel
from tts.vocoder.inference import Conditioning, kernel_weights
from tts.vocoder.wavenet import WaveNet, WaveNetConfig
from voices import make_tiny_voice


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The model with every weight moved off its initial value (zero-initialized layers too)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


def _arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("rate", [0.5, 0.8, 1.0, 1.5])
def test_the_numpy_acoustic_model_says_what_the_torch_one_says(rate):
    config = ParallelConfig(channels=32, kernel=5, encoder_layers=2, decoder_dilations=(1, 2, 4), duration_layers=2)
    model = _perturbed(ParallelModel(config), seed=1)
    with torch.no_grad():
        model.duration_out.bias.fill_(1.6)  # about four frames a symbol, each its own
    speaker = ParallelSpeaker(config, _arrays(model))
    ids = torch.randint(2, config.n_symbols, (1, 19), generator=torch.Generator().manual_seed(2))
    expected = model.speak(ids, rate=rate)
    mel, alignment = speaker.speak_one(ids[0].tolist(), rate)
    np.testing.assert_array_equal(alignment, expected.alignment[0].numpy())
    assert len(np.unique(alignment.sum(axis=0))) > 1  # durations that differ: the test can fail
    np.testing.assert_allclose(mel, expected.mel[0].numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(model.speak_one(ids[0].tolist(), rate)[0], mel, rtol=0, atol=2e-5)


def test_the_numpy_acoustic_model_refuses_weights_that_do_not_fit_its_config():
    arrays = _arrays(ParallelModel(ParallelConfig(channels=16)))
    with pytest.raises(ValueError, match=r"embed.weight has shape \(\d+, 16\), the config expects"):
        ParallelSpeaker(ParallelConfig(channels=32), arrays)
    with pytest.raises(ValueError, match="ids must be in"):
        ParallelSpeaker(ParallelConfig(channels=16), arrays).speak_one([10_000])


@pytest.mark.parametrize("cond_blocks", [0, 2])
def test_the_numpy_conditioning_is_the_torch_networks(cond_blocks):
    config = WaveNetConfig(n_layers=4, residual_channels=8, skip_channels=16, output_channels=16, max_dilation=4,
                           cond_channels=16, cond_blocks=cond_blocks, temperature=0.7)
    model = _perturbed(WaveNet(config), seed=3)
    conditioning = Conditioning(config, _arrays(model))
    mel = torch.rand(1, 30, config.n_mels, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for start, stop in ((0, 8), (8, 24), (24, 30), (0, 30)):
            expected = model.project(model.upsample_frames(mel, start, stop))[0].numpy()
            got = conditioning.frames(mel[0].numpy(), start, stop)
            assert got.shape == expected.shape == ((stop - start) * config.hop_length, 4, 16)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # The kernels' weights come from the same arrays, temperature folded in, bit for bit.
    exported = model.export_weights()
    for name, array in kernel_weights(config, _arrays(model)).items():
        np.testing.assert_array_equal(array, exported[name])


def test_the_cpu_pipeline_speaks_without_importing_torch(tmp_path):
    """A voice's parallel acoustic model and its WaveNet on the numba kernel: the audio is
    the torch path's, and PyTorch is never imported."""
    from tts import Synthesizer

    voice = make_tiny_voice(tmp_path / "v")
    script = (
        "import json, sys\n"
        "from tts import Synthesizer\n"
        f"synth = Synthesizer.load({str(voice)!r}, backend='numba')\n"
        "audio = synth.synthesize('Hello there. Who is it?', seed=5)\n"
        f"__import__('numpy').save({str(tmp_path / 'audio.npy')!r}, audio)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'label': synth.vocoder.label}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"torch": False, "label": "wavenet (numba)"}
    # The torch acoustic model (what a GPU runs) gives the same audio.
    synth = Synthesizer.load(voice, backend="numba")
    synth.acoustic = synth.voice.acoustic
    np.testing.assert_allclose(np.load(tmp_path / "audio.npy"), synth.synthesize("Hello there. Who is it?", seed=5),
                               rtol=0, atol=1e-4)


def test_weights_that_do_not_fit_the_config_are_one_clear_error(tmp_path):
    from tts import Synthesizer
    from tts.errors import SynthesisError

    voice = make_tiny_voice(tmp_path / "v")
    config = json.loads((voice / "config.json").read_text())
    config["models"]["acoustic"]["config"]["channels"] = 24
    (voice / "config.json").write_text(json.dumps(config))
    with pytest.raises(SynthesisError, match="acoustic model's weights do not match its config") as e:
        Synthesizer.load(voice, backend="numba")
    assert "\n" not in str(e.value)


def test_the_threads_setting_reaches_numpys_blas(tmp_path):
    from threadpoolctl import threadpool_info

    from tts import Synthesizer

    voice = make_tiny_voice(tmp_path / "v")
    for threads in (2, 1):
        Synthesizer.load(voice, backend="numba", threads=threads)
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == threads for pool in blas)
