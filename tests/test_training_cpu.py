"""What lets a voice train on a few CPU cores and across machines: presets, bf16 autocast on
the CPU, starting a run from a shipped voice, the acoustic model's exposure-bias remedies, and
pre-emphasis in the vocoder."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_trainer import ACOUSTIC, COMMON, VOCODER, corpus, fit  # noqa: F401 (corpus is a fixture)
from voices import TINY_VOCODER, make_tiny_voice

from tts.train.__main__ import main
from tts.train.config import config_dict, resolve_config
from tts.train.tasks import get_task
from tts.train.tasks.attention import AttentionTask
from tts.train.tasks.vocoder import Crops
from tts.train.trainer import Trainer, export_run
from tts import Synthesizer
from tts.audio import de_emphasis, mel_spectrogram, mu_law_decode, pre_emphasis
from tts.attention_model import AttentionModel
from tts.voice import load_model, save_model
from tts.vocoder.lpc import lpc_from_mel, lpc_residual, lpc_synthesis, noisy_excitation
from tts.vocoder.wavenet import START_CLASS, WaveNet, model_to_signal, signal_to_model, teacher_inputs


def test_cpu_presets_size_the_schedule(capsys):
    assert main(["vocoder", "--data", ".", "--out", "x", "--preset", "cpu", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert '"warmup_steps": 200' in printed and '"cpu_format": "auto"' in printed
    assert main(["attention", "--data", ".", "--out", "x", "--preset", "cpu", "--set", "warmup_steps=7",
                 "--print-config"]) == 0
    assert '"warmup_steps": 7' in capsys.readouterr().out  # --set still wins over the preset
    assert main(["attention", "--data", ".", "--out", "x", "--preset", "gpu-pod"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'gpu-pod'" in err


def test_cpu_bf16_autocasts_and_still_trains(corpus, tmp_path):
    cls = get_task("vocoder")
    train_config, task_config = resolve_config(cls, overrides=[*COMMON, *VOCODER, "max_steps=3", "cpu_format=bf16"])
    trainer = Trainer(cls(task_config), train_config, corpus, tmp_path / "run")
    record = trainer.fit()
    with trainer.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert record["step"] == 3 and np.isfinite(record["loss"]) and record["skipped_total"] == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["format"] == "bf16" and r["processes"] == 1 for r in log)


def test_the_throughput_report_holds_a_run_against_its_processes_peak_in_its_format(tmp_path, monkeypatch):
    import tts.train.bench as bench
    from tts.vocoder.wavenet import WaveNetConfig

    monkeypatch.setattr(bench, "cpu_peaks", lambda: ("cpu", {}, {"fp32": 1e10, "bf16": 4e10}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "vocoder", "model": {"lpc_order": 16}}))
    flops = bench.vocoder_training_flops_per_sample(WaveNetConfig(lpc_order=16)) * 8000  # a step of 8,000 samples, 1 s

    def report(**fields):
        step = {"units": 8000, "seconds": 1.0, **fields}
        (run / "log.jsonl").write_text("".join(json.dumps({"step": i + 1, **step}) + "\n" for i in range(5)))
        return bench.report(run, warmup=1).splitlines()[-1]

    assert report(processes=2, format="bf16").endswith(f"= {flops / 8e10:.2%} of 80 GFLOP/s (2 x one CPU core bf16, measured)")
    assert report(processes=1, format="fp32").endswith(f"= {flops / 1e10:.2%} of 10 GFLOP/s (one CPU core fp32, measured)")
    assert report().endswith("(one CPU core fp32, measured)")  # a log from before these fields


def test_cpu_format_auto_measures_once_then_reads_the_cache(corpus, tmp_path, capsys, monkeypatch):
    from tts.train import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing measured yet

    cls = get_task("vocoder")
    train_config, task_config = resolve_config(cls, overrides=[*COMMON, *VOCODER, "max_steps=1", "cpu_format=auto"])
    assert train_config.cpu_format == "auto"
    Trainer(cls(task_config), train_config, corpus, tmp_path / "first").fit()
    said = capsys.readouterr().err
    assert "cpu format: " in said and "measured, cached in" in said
    entries = json.loads(precision.cache_path().read_text())
    key = precision.cache_key("vocoder", config_dict(task_config))
    entry = entries[key]
    assert entry["fp32"] > 0 and entry["bf16"] > 0
    assert entry["format"] == ("bf16" if entry["bf16"] < precision.MARGIN * entry["fp32"] else "fp32")
    # The second run does not measure: a cached choice of bf16 is taken as it stands.
    entries[key] = {**entry, "format": "bf16"}
    precision.cache_path().write_text(json.dumps(entries))
    trainer = Trainer(cls(task_config), train_config, corpus, tmp_path / "second")
    trainer.fit()
    assert f"cached in {precision.cache_path()}" in capsys.readouterr().err
    with trainer.autocast():
        assert torch.is_autocast_enabled("cpu")


def test_settings_stored_before_cpu_format_still_load(tmp_path):
    cls = get_task("vocoder")
    stored = config_dict(resolve_config(cls)[0]) | config_dict(resolve_config(cls)[1])
    stored.pop("cpu_format")
    for legacy, expected in ((True, "bf16"), (False, "fp32")):
        train_config, _ = resolve_config(cls, base={**stored, "cpu_bf16": legacy})
        assert train_config.cpu_format == expected
    (tmp_path / "old.json").write_text(json.dumps({"cpu_bf16": True}))
    assert resolve_config(cls, file=tmp_path / "old.json")[0].cpu_format == "bf16"


def test_choose_cpu_format_picks_the_faster_and_keeps_the_rng(tmp_path, monkeypatch):
    from tts.train import precision

    model = torch.nn.Linear(4, 4)
    loss = lambda: model(torch.ones(2, 4)).square().sum()  # noqa: E731
    for bf16_seconds, expected in ((0.5, "bf16"), (0.95, "fp32"), (3.0, "fp32")):
        monkeypatch.setattr(precision, "measure", lambda *_: {"fp32": 1.0, "bf16": bf16_seconds})
        fmt, why = precision.choose_cpu_format("t", {"bf16": bf16_seconds}, loss, model, tmp_path / "c.json")
        assert fmt == expected and f"cpu format: {expected}" in why
    monkeypatch.undo()
    state = torch.get_rng_state()
    times = precision.measure(loss, model)
    assert set(times) == {"fp32", "bf16"} and torch.equal(torch.get_rng_state(), state)
    assert all(p.grad is None for p in model.parameters())


def test_nominal_peak_follows_the_flags():
    from tts.train.precision import nominal_peak

    avx2 = nominal_peak({"avx2", "fma"}, 1e9)
    assert avx2 == {"fp32": 32e9, "bf16": 32e9}
    assert nominal_peak({"avx2", "avx512f", "avx512_bf16"}, 1e9) == {"fp32": 64e9, "bf16": 128e9}
    assert nominal_peak({"avx512f", "amx_bf16"}, 1e9)["bf16"] == 2048e9


def test_init_starts_a_new_run_from_a_voice(corpus, tmp_path, capsys):
    fit("attention", corpus, tmp_path / "first", [*COMMON, *ACOUSTIC, "max_steps=2"])
    voice = export_run(tmp_path / "first", tmp_path / "voice")
    shipped = load_model(voice, "acoustic")
    # The voice's model config wins: no model.* settings are given here.
    cls = get_task("attention")
    train_config, task_config = resolve_config(cls, overrides=[*COMMON, "max_steps=1"])
    task_config = dataclasses.replace(task_config, model=shipped.config)
    trainer = Trainer(cls(task_config), train_config, corpus, tmp_path / "second", init_voice=voice)
    trainer._setup()
    for key, value in shipped.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    trainer.close()
    # The same through the command line, which takes the model config from the voice.
    assert main(["attention", "--data", str(corpus), "--out", str(tmp_path / "third"), "--init", str(voice),
                 "--set", *COMMON, "max_steps=1"]) == 0
    assert "step 1" in capsys.readouterr().out
    assert main(["attention", "--data", str(corpus), "--out", str(tmp_path / "fourth"),
                 "--init", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_self_feed_reads_the_models_own_frames(corpus):
    cls = get_task("attention")
    _, config = resolve_config(cls, overrides=[*ACOUSTIC, "model.dropout=0", "model.prenet_dropout=0",
                                               "self_feed=1.0", "model.r=2"])
    task: AttentionTask = cls(config)
    torch.manual_seed(0)
    model = AttentionModel(config.model)
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


@pytest.mark.parametrize("shaping", [{"pre_emphasis": 0.86}, {"lpc_order": 12}])
def test_a_shaped_vocoder_trains_on_its_signal_and_speaks_audio(corpus, tmp_path, shaping):
    """Pre-emphasis or linear prediction: the crops hold the signal the network models, and
    every way of generating turns its samples back into audio the same way, chunk by chunk."""
    from tts.train.data import FeatureCache

    config = dataclasses.replace(TINY_VOCODER, **shaping)
    cache = FeatureCache(corpus, trim_db=None)
    plain, shaped = Crops(cache, [0], 4), Crops(cache, [0], 4, model=config)
    wave, mel = mu_law_decode(plain[0]["classes"]), plain[0]["mel"]
    signal = mu_law_decode(shaped[0]["classes"])
    # The same crop, shaped (its first samples also saw the samples before the crop).
    assert np.abs(signal - signal_to_model(config, wave, mel))[16:].max() < 0.03
    assert np.allclose(model_to_signal(config, signal_to_model(config, wave, mel), mel)[0], wave, atol=1e-4)

    # Its mels (fixed inputs) keep every uniform away from a class boundary, where numba and torch
    # could round to different classes.
    voice = make_tiny_voice(tmp_path / "v", kind="attention")
    torch.manual_seed(1)
    vocoder = WaveNet(config).eval()
    save_model(voice, "vocoder", vocoder)
    synth = Synthesizer.load(voice, vocoder="numba")
    streamed = [c.audio for c in synth.stream("Hi there. Bye.", seed=3)]
    assert np.array_equal(np.concatenate(streamed), synth.synthesize("Hi there. Bye.", seed=3))
    assert np.allclose(np.concatenate(streamed), np.concatenate(
        [c.audio for c in Synthesizer.load(voice, vocoder="torch").stream("Hi there. Bye.", seed=3)]), atol=1e-4)
    mel = torch.rand(3, 80)
    raw = WaveNet(TINY_VOCODER).eval()
    raw.load_state_dict(vocoder.state_dict())
    from tts.audio import DEFAULT_AUDIO, soft_limit
    from tts.vocoder.choice import VocoderChoice
    from tts.vocoder.runtime import WaveNetVocoder

    decoded = WaveNetVocoder.from_wavenet(raw, VocoderChoice("wavenet", "torch"), DEFAULT_AUDIO).chunks(
        mel.numpy(), np.random.default_rng(2))
    expected = soft_limit(model_to_signal(config, np.concatenate([a for a, _ in decoded]), mel.numpy())[0])
    assert np.allclose(vocoder.vocode(mel, seed=2), expected, atol=1e-5)


def test_linear_prediction_from_the_mel():
    sr, hop = 16000, 200
    t = np.arange(sr // 2) / sr
    rng = np.random.default_rng(0)
    # A voiced vowel-like sound: harmonics of 120 Hz under a formant-like envelope, plus breath.
    x = sum(np.exp(-((120 * k - 700) / 400.0) ** 2) * np.sin(2 * np.pi * 120 * k * t) for k in range(1, 40))
    x = (0.4 * x / np.abs(x).max() + 0.002 * rng.standard_normal(len(t))).astype(np.float32)
    mel = mel_spectrogram(x)[: len(x) // hop]
    a = lpc_from_mel(mel, 16)
    assert a.shape == (len(mel), 16) and np.isfinite(a).all()
    e = lpc_residual(x, a, hop)
    assert 20 * np.log10(x.std() / e[hop:].std()) > 10  # the envelope predicts most of the signal
    whole, _ = lpc_synthesis(e, a, hop)
    assert np.abs(whole - x).max() < 1e-4  # synthesis inverts the residual
    # Chunks on frame boundaries, as the synthesizer cuts them, carry the filter's memory.
    cut = 7 * hop
    first, carry = lpc_synthesis(e[:cut], a[:7], hop)
    rest, _ = lpc_synthesis(e[cut:], a[7:], hop, carry)
    assert np.array_equal(np.concatenate([first, rest]), whole)


def test_lpc_and_pre_emphasis_exclude_each_other():
    with pytest.raises(ValueError, match="exclude"):
        dataclasses.replace(TINY_VOCODER, lpc_order=16, pre_emphasis=0.86)
    with pytest.raises(ValueError, match="lpc_order"):
        dataclasses.replace(TINY_VOCODER, lpc_order=-1)


@pytest.mark.parametrize("order", [0, 12])
def test_noise_injection_targets_undo_the_drift_of_the_noisy_inputs(rng, order):
    """LPCNet's noise injection: the fed-back classes carry the noise, and each target is what
    brings the noisy signal back to the audio, within one quantization step of the excitation."""
    hop, frames = 200, 6
    t = np.arange(frames * hop) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    a = lpc_from_mel(mel_spectrogram(audio)[:frames], order) if order else np.zeros((frames, 0), np.float32)
    history = np.zeros(order, np.float32)
    clean_targets, clean_inputs, _, _ = noisy_excitation(audio, a, hop, history, np.zeros(len(audio), np.int64), START_CLASS)
    assert clean_inputs[0] == START_CLASS and np.array_equal(clean_inputs[1:], clean_targets[:-1])
    noise = rng.integers(-6, 7, len(audio))
    targets, inputs, _, _ = noisy_excitation(audio, a, hop, history, noise, START_CLASS)
    noisy = inputs[1:]  # the class fed back after sample t, for t < T - 1
    assert np.array_equal(noisy, np.clip(targets[:-1] + noise[:-1], 0, 255))
    # The noisy signal the predictor runs on, and its predictions.
    signal, _ = lpc_synthesis(mu_law_decode(noisy), a, hop) if order else (mu_law_decode(noisy), None)
    prediction = signal - mu_law_decode(noisy)  # p[t] = s_noisy[t] - e_noisy[t]
    step = np.abs(np.diff(mu_law_decode(np.arange(256)))).max()
    assert np.abs(prediction + mu_law_decode(targets[:-1]) - audio[:-1]).max() <= step / 2 + 1e-4
    clean = lpc_synthesis(mu_law_decode(clean_targets), a, hop)[0] if order else mu_law_decode(clean_targets)
    assert np.abs(signal - audio[:-1]).mean() > 2 * np.abs(clean - audio).mean()  # the noise moved it


def test_noise_injection_trains_and_its_crops_repeat_per_epoch(corpus, tmp_path):
    from tts.train.data import FeatureCache

    config = dataclasses.replace(TINY_VOCODER, lpc_order=12)
    cache = FeatureCache(corpus, trim_db=None)
    crops = Crops(cache, [0, 1], 4, model=config, noise=4.0)
    item = crops[1]
    assert item["inputs"].shape == item["classes"].shape == (800,)
    assert not np.array_equal(item["inputs"][1:], item["classes"][:-1])  # noisy, not teacher forcing
    assert np.array_equal(crops[1]["inputs"], item["inputs"])  # the same crop and noise on a resume
    crops.set_epoch(1, 0)
    assert not np.array_equal(crops[1]["inputs"], item["inputs"])
    summary = fit("vocoder", corpus, tmp_path / "run", COMMON + VOCODER + ["max_steps=2", "noise=4"])
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


def test_spectral_terms_vanish_for_the_true_samples_and_pass_gradient_to_the_logits():
    from tts.train.tasks.vocoder import spectral_terms

    g = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.sin(torch.arange(2 * 4000) / 16000 * 2 * np.pi * 220).reshape(2, 4000)
    wave = wave + 0.01 * torch.randn(wave.shape, generator=g)
    classes = torch.randint(100, 156, wave.shape, generator=g)
    certain = torch.nn.functional.one_hot(classes, 256).float() * 40.0
    stft, l1 = spectral_terms(certain, classes, wave, generator=g)
    assert float(stft) < 1e-3 and float(l1) < 1e-6  # the drawn samples are the true ones
    unsure = torch.zeros(2, 4000, 256, requires_grad=True)
    stft, l1 = spectral_terms(unsure, classes, wave, generator=g)
    assert stft.item() > 0.5 and l1.item() > 1.9
    stft.backward()  # straight through the drawn class to its softmax
    assert torch.isfinite(unsure.grad).all() and unsure.grad.abs().sum() > 0


def test_spectral_fine_tuning_trains_and_logs_its_terms(corpus, tmp_path):
    summary = fit("vocoder", corpus, tmp_path / "run", COMMON + VOCODER + ["max_steps=2", "spectral=1"])
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("stft" in row and "cross_entropy" in row for row in logged)
    with pytest.raises(ValueError, match="spectral"):
        resolve_config(get_task("vocoder"), overrides=["spectral=-1"])


def test_ground_truth_aligned_mels_are_the_voices_on_the_real_durations(corpus, tmp_path):
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import aligned_mels

    voice = make_tiny_voice(tmp_path / "voice")
    cache = FeatureCache(corpus, trim_db=None).build(progress=False)
    folder = aligned_mels(cache, voice, progress=False)
    acoustic = load_model(voice, "acoustic")
    own = cache[0]
    mel = np.load(folder / f"{cache.entries[0]['id']}.npy")
    assert mel.shape == own["mel"].shape and not np.allclose(mel, own["mel"], atol=1e-3)
    with torch.no_grad():
        said = acoustic(torch.from_numpy(own["ids"].astype(np.int64))[None], torch.tensor([len(own["ids"])]),
                        torch.from_numpy(own["mel"])[None], torch.tensor([len(own["mel"])]))["mel"][0]
    assert np.allclose(mel, said.numpy(), atol=1e-6)
    assert aligned_mels(cache, voice, progress=False) == folder  # made once
    crops = Crops(cache, [0], 4, model=TINY_VOCODER, mel_dir=folder)
    item, start = crops[0], None
    for s in range(len(mel) - 3):  # the crop's frames are the aligned mel's
        if np.array_equal(item["mel"], mel[s:s + 4]):
            start = s
    assert start is not None
    summary = fit("vocoder", corpus, tmp_path / "run", COMMON + VOCODER + ["max_steps=2", f"aligned_mels={voice}"])
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


def test_aligned_mels_need_a_parallel_voice(corpus, tmp_path):
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import aligned_mels
    from tts.voice import VoiceError

    voice = make_tiny_voice(tmp_path / "voice", kind="attention")
    with pytest.raises(VoiceError, match="parallel"):
        aligned_mels(FeatureCache(corpus, trim_db=None).build(progress=False), voice, progress=False)


def test_lpcnet_inputs_train_and_warm_start_from_a_voice_without_them(corpus, tmp_path):
    """Crops carry the classes of the loop's signal and prediction; a run started from a voice
    whose WaveNet lacks them (--init with --set model.lpc_inputs=true) begins exactly where
    that WaveNet is (their embeddings start at zero) and trains."""
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import VocoderTask, VocoderTaskConfig

    lpc = dataclasses.replace(TINY_VOCODER, lpc_order=8, lpc_inputs=True)
    cache = FeatureCache(corpus, trim_db=None)
    item = Crops(cache, [0], 4, model=lpc)[0]
    assert set(item) == {"mel", "classes", "inputs", "signal_in", "prediction_in"}
    assert np.array_equal(item["inputs"][1:], item["classes"][:-1])  # no noise: the loop's own classes
    assert len(np.unique(item["signal_in"])) > 20 and len(np.unique(item["prediction_in"])) > 20
    decoded = mu_law_decode(np.arange(256))  # the signal is the prediction plus the excitation, class for class
    assert np.abs(decoded[item["signal_in"][1:]] - decoded[item["prediction_in"][:-1]]
                  - decoded[item["classes"][:-1]]).max() < 0.05

    voice = make_tiny_voice(tmp_path / "voice")
    plain = dataclasses.replace(lpc, lpc_inputs=False)
    torch.manual_seed(3)
    save_model(voice, "vocoder", WaveNet(plain).eval())
    run = tmp_path / "run"
    sets = [s for s in COMMON + VOCODER if not s.startswith("model.")] + ["max_steps=3", "model.lpc_order=8", "model.lpc_inputs=true"]
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--init", str(voice), "--set", *sets]) == 0
    trained = load_model(export_run(run, tmp_path / "out"), "vocoder")
    assert trained.config == lpc and trained.embedding_signal.weight.abs().sum() > 0  # it learned to use them
    source = load_model(voice, "vocoder")
    grown = WaveNet(lpc)
    VocoderTask(VocoderTaskConfig(model=lpc)).init_from(grown, source)
    batch = {k: torch.from_numpy(v)[None] for k, v in item.items()}
    with torch.no_grad():  # zero embeddings: the same logits as the network it grew from
        torch.testing.assert_close(grown(batch["inputs"], batch["mel"].float(), batch["signal_in"], batch["prediction_in"]),
                                   source(batch["inputs"], batch["mel"].float()))


def test_a_wavenet_grows_frame_rate_blocks_from_a_voice_without_them_and_trains_them(corpus, tmp_path):
    """--set model.cond_blocks=2 over a voice whose WaveNet has none: the grown network starts
    with the same logits (each block's output conv at zero), trains the blocks, and a network
    cannot shrink to fewer blocks than the voice's."""
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import VocoderTask, VocoderTaskConfig
    from tts.voice import VoiceError

    voice = make_tiny_voice(tmp_path / "voice")
    source = load_model(voice, "vocoder")
    blocks = dataclasses.replace(source.config, cond_blocks=2)
    grown = WaveNet(blocks)
    VocoderTask(VocoderTaskConfig(model=blocks)).init_from(grown, source)
    item = Crops(FeatureCache(corpus, trim_db=None), [0], 4, model=blocks)[0]
    inputs, mel = teacher_inputs(torch.from_numpy(item["classes"])[None]), torch.from_numpy(item["mel"])[None].float()
    with torch.no_grad():
        torch.testing.assert_close(grown(inputs, mel), source(inputs, mel))
    with pytest.raises(VoiceError, match="another config"):
        VocoderTask(VocoderTaskConfig(model=source.config)).init_from(WaveNet(source.config), grown)

    run = tmp_path / "run"
    sets = [s for s in COMMON + VOCODER if not s.startswith("model.")] + ["max_steps=3", "model.cond_blocks=2"]
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--init", str(voice), "--set", *sets]) == 0
    trained = load_model(export_run(run, tmp_path / "out"), "vocoder")
    assert trained.config == blocks
    assert all(second.weight.abs().sum() > 0 for _, second in trained.cond_blocks)  # they learned


def test_a_wavenet_widens_from_a_voice_and_its_new_channels_learn(corpus, tmp_path):
    """--set model.residual_channels=R over a voice with fewer: the wider network starts with
    the same logits (new channels silent, new units with no way out), every new part gets a
    gradient, a run trains them, and a network cannot narrow."""
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import VocoderTask, VocoderTaskConfig
    from tts.voice import VoiceError

    voice = make_tiny_voice(tmp_path / "voice")
    source = load_model(voice, "vocoder")
    R0 = source.config.residual_channels
    wide = dataclasses.replace(source.config, residual_channels=R0 + 4)
    grown = WaveNet(wide)
    VocoderTask(VocoderTaskConfig(model=wide)).init_from(grown, source)
    item = Crops(FeatureCache(corpus, trim_db=None), [0], 4, model=wide)[0]
    inputs, mel = teacher_inputs(torch.from_numpy(item["classes"])[None]), torch.from_numpy(item["mel"])[None].float()
    with torch.no_grad():
        torch.testing.assert_close(grown(inputs, mel), source(inputs, mel))
    loss = torch.nn.functional.cross_entropy(grown(inputs, mel)[0], torch.from_numpy(item["classes"]).long())
    loss.backward()
    assert grown.skip[0].weight.grad[:, R0:].abs().sum() > 0  # the new units' way out
    assert grown.res[0].weight.grad[R0:].abs().sum() > 0  # the new channels' way in
    with pytest.raises(VoiceError, match="another config"):
        VocoderTask(VocoderTaskConfig(model=source.config)).init_from(WaveNet(source.config), grown)

    run = tmp_path / "run"
    sets = [s for s in COMMON + VOCODER if not s.startswith("model.")] + ["max_steps=3", f"model.residual_channels={R0 + 4}"]
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--init", str(voice), "--set", *sets]) == 0
    trained = load_model(export_run(run, tmp_path / "out"), "vocoder")
    assert trained.config == wide and trained.skip[0].weight[:, R0:].abs().sum() > 0


def test_augmentation_moves_the_pitch_and_makes_the_mel_from_the_changed_audio(corpus, tmp_path):
    """LPCNet's augmentation: an octave up is twice the frequency in half the time, filtered
    and under the peak, with the mel of exactly that audio; crops drawn with it show the
    higher pitch, crops without it are the cache's, and a run trains with it."""
    from tts.train.data import FeatureCache
    from tts.train.tasks.vocoder import AUGMENT_PEAK, augmented

    sr, hop = 16000, 200
    tone = 0.9 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr).astype(np.float32)
    mel, wave = augmented(tone, np.random.default_rng(0), (12.0, 12.0))
    assert len(wave) == len(mel) * hop and abs(len(wave) - sr // 2) <= hop
    assert np.array_equal(mel, mel_spectrogram(wave)[:len(mel)])
    assert np.abs(wave).max() <= AUGMENT_PEAK + 1e-6

    def pitch(x):
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return np.argmax(spectrum) * sr / len(x)

    assert abs(pitch(wave) - 400) < 10
    cache = FeatureCache(corpus, trim_db=None)
    plain = Crops(cache, [0], 4, wave=True)[0]
    octave = Crops(cache, [0], 4, wave=True, augment=1.0, semitones=(12.0, 12.0))[0]
    cached = np.load(cache.dir / f"{cache.entries[0]['id']}.npz")["mel"]
    assert any(np.array_equal(cached[s:s + 4], plain["mel"]) for s in range(len(cached) - 3))
    assert abs(pitch(plain["wave"]) - 150) < 25 and abs(pitch(octave["wave"]) - 300) < 25
    assert plain["mel"].shape == octave["mel"].shape and not np.allclose(plain["mel"], octave["mel"])
    summary = fit("vocoder", corpus, tmp_path / "run", COMMON + VOCODER + ["max_steps=2", "augment=1"])
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


@pytest.mark.parametrize("setting, message", [("augment=1.5", "augment must"),
                                              ("augment_semitones=[4,-4]", "augment_semitones"),
                                              ("augment_semitones=[-13,0]", "augment_semitones")])
def test_augmentation_settings_out_of_range_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(get_task("vocoder"), overrides=[setting])


def test_a_run_that_trains_the_conditioning_keeps_the_sample_rate_network(corpus, tmp_path):
    from tts.train.tasks.vocoder import CONDITIONING

    fit("vocoder", corpus, tmp_path / "base", COMMON + VOCODER + ["max_steps=1"])
    export_run(tmp_path / "base", tmp_path / "voice")
    before = load_model(tmp_path / "voice", "vocoder").state_dict()
    cls = get_task("vocoder")
    train_config, task_config = resolve_config(cls, overrides=COMMON + VOCODER + ["max_steps=2", "trains=conditioning",
                                                                                  "ema=0"])
    Trainer(cls(task_config), train_config, corpus, tmp_path / "run", init_voice=tmp_path / "voice").fit()
    export_run(tmp_path / "run", tmp_path / "voice")
    after = load_model(tmp_path / "voice", "vocoder").state_dict()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith(CONDITIONING) for name in moved)
    assert any(name.startswith("cond_proj.") for name in moved)
    with pytest.raises(ValueError, match="trains"):
        resolve_config(cls, overrides=["trains=sample"])
