"""What lets a voice train on a few CPU cores and across machines: presets, bf16 autocast on
the CPU, starting a run from a shipped voice, the acoustic model's exposure-bias remedies, and
pre-emphasis in the vocoder."""

import dataclasses

import numpy as np
import pytest
import torch
from test_trainer import ACOUSTIC, COMMON, VOCODER, corpus, fit  # noqa: F401 (corpus is a fixture)
from voices import TINY_ACOUSTIC, TINY_VOCODER, make_tiny_voice

from train.__main__ import main
from train.config import resolve_config
from train.tasks import get_task
from train.tasks.acoustic import AcousticTask
from train.tasks.vocoder import Crops
from train.trainer import Trainer, export_run
from tts import Synthesizer
from tts.audio import de_emphasis, mu_law_decode, pre_emphasis
from tts.model import AcousticModel
from tts.voice import load_model, save_model
from vocoder.wavenet import WaveNet


def test_cpu_presets_size_the_schedule(capsys):
    assert main(["vocoder", "--data", ".", "--out", "x", "--preset", "cpu", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert '"warmup_steps": 200' in printed and '"cpu_bf16": true' in printed
    assert main(["acoustic", "--data", ".", "--out", "x", "--preset", "cpu", "--set", "warmup_steps=7",
                 "--print-config"]) == 0
    assert '"warmup_steps": 7' in capsys.readouterr().out  # --set still wins over the preset
    assert main(["acoustic", "--data", ".", "--out", "x", "--preset", "gpu-pod"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'gpu-pod'" in err


def test_cpu_bf16_autocasts_and_still_trains(corpus, tmp_path):
    cls = get_task("vocoder")
    train_config, task_config = resolve_config(cls, overrides=[*COMMON, *VOCODER, "max_steps=3", "cpu_bf16=true"])
    trainer = Trainer(cls(task_config), train_config, corpus, tmp_path / "run")
    record = trainer.fit()
    with trainer.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert record["step"] == 3 and np.isfinite(record["loss"]) and record["skipped_total"] == 0


def test_init_starts_a_new_run_from_a_voice(corpus, tmp_path, capsys):
    fit("acoustic", corpus, tmp_path / "first", [*COMMON, *ACOUSTIC, "max_steps=2"])
    voice = export_run(tmp_path / "first", tmp_path / "voice")
    shipped = load_model(voice, "acoustic")
    # The voice's model config wins: no model.* settings are given here.
    cls = get_task("acoustic")
    train_config, task_config = resolve_config(cls, overrides=[*COMMON, "max_steps=1"])
    task_config = dataclasses.replace(task_config, model=shipped.config)
    trainer = Trainer(cls(task_config), train_config, corpus, tmp_path / "second", init_voice=voice)
    trainer._setup()
    for key, value in shipped.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    trainer.close()
    # The same through the command line, which takes the model config from the voice.
    assert main(["acoustic", "--data", str(corpus), "--out", str(tmp_path / "third"), "--init", str(voice),
                 "--set", *COMMON, "max_steps=1"]) == 0
    assert "step 1" in capsys.readouterr().out
    assert main(["acoustic", "--data", str(corpus), "--out", str(tmp_path / "fourth"),
                 "--init", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_self_feed_reads_the_models_own_frames(corpus):
    cls = get_task("acoustic")
    _, config = resolve_config(cls, overrides=[*ACOUSTIC, "model.dropout=0", "model.prenet_dropout=0",
                                               "self_feed=1.0", "model.r=2"])
    task: AcousticTask = cls(config)
    torch.manual_seed(0)
    model = AcousticModel(config.model)
    mel = torch.rand(2, 10, 80)
    batch = {"ids": torch.randint(1, 40, (2, 6)), "id_lengths": torch.tensor([6, 4]), "mel": mel,
             "mel_lengths": torch.tensor([10, 7])}
    own = model(batch["ids"], batch["id_lengths"], mel, batch["mel_lengths"])["mel_before"]
    assert torch.allclose(task.decoder_input(model, batch), own)  # every step reads its own frames
    loss, _ = task.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    plain = cls(dataclasses.replace(config, self_feed=0.0))
    assert plain.decoder_input(model, batch) is None
    noisy = cls(dataclasses.replace(config, self_feed=0.0, input_noise=0.1)).decoder_input(model, batch)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0 and 0.02 < (noisy - mel).abs().mean() < 0.2


def test_pre_emphasis_round_trips_chunk_by_chunk(rng):
    x = (0.5 * rng.standard_normal(5000)).clip(-1, 1).astype(np.float32)
    emphasized = pre_emphasis(x, 0.86)
    assert np.allclose(emphasized[1:], x[1:] - 0.86 * x[:-1], atol=1e-6)
    whole, _ = de_emphasis(emphasized, 0.86)
    assert np.allclose(whole, x, atol=1e-5)
    pieces, last = [], 0.0
    for start in range(0, 5000, 1234):
        piece, last = de_emphasis(emphasized[start:start + 1234], 0.86, last)
        pieces.append(piece)
    assert np.array_equal(np.concatenate(pieces), whole)
    assert pre_emphasis(x, 0.0) is not None and np.array_equal(de_emphasis(x, 0.0)[0], x)


def test_a_pre_emphasis_vocoder_trains_on_emphasized_audio_and_speaks_de_emphasized(corpus, tmp_path):
    from train.data import FeatureCache

    cache = FeatureCache(corpus, trim_db=None)
    plain, emphasized = Crops(cache, [0], 4), Crops(cache, [0], 4, pre_emphasis=0.86)
    wave = mu_law_decode(plain[0]["classes"])
    # The same crop, emphasized (its first sample also saw the sample before the crop).
    assert np.abs(mu_law_decode(emphasized[0]["classes"]) - pre_emphasis(wave, 0.86))[1:].max() < 0.03

    voice = make_tiny_voice(tmp_path / "v")
    torch.manual_seed(1)
    vocoder = WaveNet(dataclasses.replace(TINY_VOCODER, pre_emphasis=0.86)).eval()
    save_model(voice, "vocoder", vocoder)
    synth = Synthesizer.load(voice, vocoder="torch")
    streamed = [c.audio for c in synth.stream("Hi there. Bye.", seed=3)]
    assert np.array_equal(np.concatenate(streamed), synth.synthesize("Hi there. Bye.", seed=3))
    mel = torch.rand(3, 80)
    raw = WaveNet(TINY_VOCODER).eval()
    raw.load_state_dict(vocoder.state_dict())
    assert np.allclose(vocoder.vocode(mel, seed=2), de_emphasis(raw.vocode(mel, seed=2), 0.86)[0], atol=1e-5)
    assert TINY_ACOUSTIC.r == 2
