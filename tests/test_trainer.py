"""The trainer end to end, on CPU with gloo: tiny models on a tiny synthetic LJ Speech-layout
corpus made here. Multi-process runs go through torchrun in a subprocess."""

import json
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tts.train.__main__ import main
from tts.train.data import FeatureCache
from tts.train.tasks import get_task
from tts.train.tasks.attention import AttentionTask
from tts.train.config import ConfigError, TrainConfig, resolve_config
from tts.train.trainer import Trainer, checkpoints, export_run, latest_checkpoint, load_checkpoint, lr_at
from tts.voice import load_model, load_voice, read_config

REPO = Path(__file__).resolve().parents[1]
# Equal phoneme counts and equal durations: every clip weighs the same in a batch mean, so one
# process with a batch of 4 and two processes with 2 each compute the same gradient.
WORDS = ["Cat.", "Dog.", "Pin.", "Sun.", "Map.", "Bed.", "Hat.", "Cup."]
# fp32 named: "auto" would time a probe step per run, and a loaded machine could time either
# format faster, so that runs meant to agree would compute in different formats.
COMMON = ["trim_db=none", "batch_size=4", "eval_clips=1", "num_workers=0", "eval_every=0", "warmup_steps=0",
          "decay=constant", "checkpoint_every=100", "lr=1e-3", "cpu_format=fp32"]
ACOUSTIC = ["model.embed_dim=16", "model.encoder_channels=16", "model.encoder_layers=1", "model.prenet_dim=16",
            "model.decoder_channels=16", "model.decoder_dilations=1,2", "model.converter_dilations=1",
            "model.attention_dim=16", "model.postnet_channels=16", "model.postnet_layers=1"]
NO_DROPOUT = ["model.dropout=0", "model.prenet_dropout=0"]
VOCODER = ["segment_frames=4", "sample_frames=2", "model.n_layers=3", "model.residual_channels=8",
           "model.skip_channels=8", "model.output_channels=8", "model.cond_channels=8", "model.max_dilation=2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight 0.3 s modulated tones with one-syllable texts, features cached in place (without
    trimming, which would only cost the import of librosa.effects)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wavs").mkdir()
    sr = 16000
    t = np.arange(int(0.3 * sr)) / sr
    for i, word in enumerate(WORDS):
        x = 0.5 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
        sf.write(root / "wavs" / f"LJ{i:03d}.wav", x.astype(np.float32), sr)
    (root / "metadata.csv").write_text("".join(f"LJ{i:03d}|{w}|{w}\n" for i, w in enumerate(WORDS)))
    FeatureCache(root, trim_db=None).build(progress=False)  # steady tones: nothing to trim
    return root


def fit(task_name, data, out, sets, resume=True, task_cls=None):
    cls = get_task(task_name)
    train_config, task_config = resolve_config(cls, overrides=sets)
    return Trainer((task_cls or cls)(task_config), train_config, data, out, resume=resume).fit()


def losses(run_dir) -> dict[int, float | None]:
    """Step -> loss of a run's log.jsonl."""
    log = {}
    for line in (Path(run_dir) / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["step"] not in log, "a step is logged twice"
        log[record["step"]] = record["loss"]
    return log


def start_cli(args, nproc=1) -> subprocess.Popen:
    """``python -m tts.train ARGS``, or under ``torchrun --standalone`` (a free port) for nproc > 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if nproc == 1:
        cmd = [sys.executable, "-m", "tts.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tts.train", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout=180) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(args, nproc=1):
    return finish(start_cli(args, nproc))


def final_weights(run_dir, key="model"):
    return load_checkpoint(latest_checkpoint(run_dir))[key]


def tensorboard(run_dir):
    """A run's TensorBoard events, read back with tensorboard's own reader (every event kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0, "images": 0, "audio": 0,
                                                                         "tensors": 0})
    events.Reload()
    return events


def assert_training_scalars(run_dir, steps):
    """The losses and learning rates of log.jsonl, step by step, are in TensorBoard too."""
    events, log = tensorboard(run_dir), losses(run_dir)
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/items_per_s", "train/skipped_steps"):
        assert [e.step for e in events.Scalars(tag)] == list(steps), tag
    np.testing.assert_allclose([e.value for e in events.Scalars("train/loss")], [log[s] for s in steps], rtol=1e-6)
    lrs = {json.loads(line)["step"]: json.loads(line)["lr"] for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()}
    np.testing.assert_allclose([e.value for e in events.Scalars("train/lr")], [lrs[s] for s in steps], rtol=1e-6)
    return events


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=f"{k} differs")


# --- config --------------------------------------------------------------------------------

def test_settings_are_typed_and_checked(tmp_path):
    cls = get_task("attention")
    train, task = resolve_config(cls, overrides=["lr=3e-4", "model.r=2", "model.decoder_dilations=1,2",
                                                 "model.postnet=false", "eval_clips=2", "betas=0.8,0.9"])
    assert train.lr == 3e-4 and train.betas == (0.8, 0.9) and train.batch_size == 16  # the task's default
    assert task.model.r == 2 and task.model.decoder_dilations == (1, 2) and task.model.postnet is False
    (tmp_path / "c.json").write_text(json.dumps({"max_steps": 7, "model": {"r": 3}}))
    train, task = resolve_config(cls, file=tmp_path / "c.json", overrides=["model.n_mels=80"])
    assert train.max_steps == 7 and task.model.r == 3 and task.model.attention_dim == 128
    for bad, message in [(["lr"], "key=value"), (["lrr=1"], "did you mean lr"), (["model.rr=2"], "model.r"),
                         (["model.r=two"], "expected int"), (["decay=linear"], "decay must be"),
                         (["model.r=0"], "r must be >= 1"), (["model=2"], "group of settings"),
                         (["accumulation_steps=3"], "divisible"), (["betas=0.9"], "2 comma-separated"),
                         (["lr.x=1"], "single setting")]:
        with pytest.raises(ConfigError, match=message):
            resolve_config(cls, overrides=bad)


def test_print_config_shows_every_setting(capsys):
    assert main(["vocoder", "--data", "unused", "--out", "unused", "--print-config", "--set", "model.n_layers=4"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task"] == "vocoder" and shown["ema"] == 0.9999 and shown["model"]["n_layers"] == 4
    assert shown["segment_frames"] == 40 and shown["batch_size"] == 8


def test_print_config_needs_no_data_or_run_folder(capsys):
    from tts.train.tasks import TASKS

    for name in TASKS:
        assert main([name, "--print-config"]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["task"] == name
    assert main(["parallel", "--preset", "cpu", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "parallel"
    # Training still needs both.
    assert main(["parallel", "--data", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "--data" not in err


def test_bad_data_is_refused_before_the_run_folder_is_made(tmp_path, capsys):
    (tmp_path / "no_metadata" / "wavs").mkdir(parents=True)
    for name in ("parallel", "vocoder"):
        assert main([name, "--data", str(tmp_path / "no_metadata"), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "metadata.csv" in err, err
        assert not (tmp_path / "run").exists()


def test_learning_rate_schedule():
    c = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=9, max_steps=109, decay="cosine")
    assert lr_at(c, 0) == pytest.approx(0.1) and lr_at(c, 8) == pytest.approx(0.9)
    assert lr_at(c, 9) == pytest.approx(1.0) and lr_at(c, 59) == pytest.approx(0.55)
    assert lr_at(c, 109) == pytest.approx(0.1) and lr_at(c, 500) == pytest.approx(0.1)
    c = TrainConfig(lr=1.0, warmup_steps=4, decay="inverse_sqrt")
    assert lr_at(c, 3) == pytest.approx(0.8) and lr_at(c, 15) == pytest.approx(0.5)


# --- one and two processes -----------------------------------------------------------------

# Softmax ignores a shift shared by all keys, so the attention key bias gets only rounding
# noise as its gradient; Adam would scale that noise to full steps. A larger eps keeps such
# steps negligible, so that the weights can be compared.
ADAM_EPS = "adam_eps=1e-4"


def test_acoustic_one_and_two_processes_agree(corpus, tmp_path):
    sets = COMMON + ACOUSTIC + NO_DROPOUT + ["max_steps=2", "lr=1e-2", ADAM_EPS]
    two = start_cli(["attention", "--data", str(corpus), "--out", str(tmp_path / "two"), "--set", *sets], nproc=2)
    # Evaluating (only here) must not change training: it runs on its own RNG.
    record = fit("attention", corpus, tmp_path / "one", sets + ["eval_every=2"])
    assert record["step"] == 2 and np.isfinite(record["loss"])
    two = finish(two)
    assert two.returncode == 0, two.stderr[-3000:]
    one_log, two_log = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one_log) == sorted(two_log) == [1, 2]
    for step in one_log:
        assert one_log[step] == pytest.approx(two_log[step], abs=1e-6)
    assert_same_weights(final_weights(tmp_path / "one"), final_weights(tmp_path / "two"), atol=1e-5)

    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "two"))  # weights_only=True inside
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 2 and ckpt["world_size"] == 2
    assert not any(k.startswith(("module.", "model.")) for k in ckpt["model"])
    evaluation = json.loads((tmp_path / "one" / "eval.jsonl").read_text())
    assert evaluation["step"] == 2 and np.isfinite(evaluation["loss"])
    # TensorBoard: the losses and learning rate of every step, the held-out loss, and the
    # attention alignments over the mels (teacher-forced and free-running) as pictures.
    events = assert_training_scalars(tmp_path / "one", [1, 2])
    assert [e.value for e in events.Scalars("eval/loss")] == pytest.approx([evaluation["loss"]], rel=1e-6)
    for tag in ("eval/teacher_forced", "eval/generated"):
        (image,) = events.Images(tag)
        assert image.step == 2 and image.encoded_image_string.startswith(b"\x89PNG") and image.width > 100, tag

    assert main(["export", str(tmp_path / "two"), "--to", str(tmp_path / "voice")]) == 0
    model = load_model(tmp_path / "voice", "acoustic")
    assert_same_weights(model.state_dict(), ckpt["model"], atol=0)
    assert model.config.decoder_dilations == (1, 2)


def test_vocoder_one_and_two_processes_agree_and_export_ema(corpus, tmp_path):
    sets = COMMON + VOCODER + ["max_steps=2", "lr=1e-2", "ema=0.5", "accumulation_steps=2", ADAM_EPS]
    two = start_cli(["vocoder", "--data", str(corpus), "--out", str(tmp_path / "two"), "--set", *sets], nproc=2)
    record = fit("vocoder", corpus, tmp_path / "one", sets + ["eval_every=2"])
    assert record["step"] == 2 and np.isfinite(record["loss"])
    two = finish(two)
    assert two.returncode == 0, two.stderr[-3000:]
    one_log, two_log = losses(tmp_path / "one"), losses(tmp_path / "two")
    for step in (1, 2):
        assert one_log[step] == pytest.approx(two_log[step], abs=1e-6)
    assert_same_weights(final_weights(tmp_path / "one"), final_weights(tmp_path / "two"), atol=1e-5)
    assert_same_weights(final_weights(tmp_path / "one", "ema"), final_weights(tmp_path / "two", "ema"), atol=1e-5)
    assert np.isfinite(json.loads((tmp_path / "one" / "eval.jsonl").read_text())["loss"])
    # TensorBoard: losses and learning rate, and the generated and real audio of a held-out clip.
    events = assert_training_scalars(tmp_path / "one", [1, 2])
    for tag in ("eval/generated", "eval/real"):
        (audio,) = events.Audio(tag)
        assert audio.step == 2 and audio.sample_rate == 16000 and audio.encoded_audio_string.startswith(b"RIFF"), tag
        assert audio.length_frames == 2 * 200, tag  # sample_frames mel frames of 200 samples

    export_run(tmp_path / "one", tmp_path / "voice")
    model = load_model(tmp_path / "voice", "vocoder")
    ema, raw = final_weights(tmp_path / "one", "ema"), final_weights(tmp_path / "one")
    assert_same_weights(model.state_dict(), ema, atol=0)  # the moving average is what ships
    assert not torch.equal(ema["out2.weight"], raw["out2.weight"])
    # The command line writes the voice's sampling temperature beside the weights.
    assert main(["export", str(tmp_path / "one"), "--to", str(tmp_path / "voice"),
                 "--default-vocoder", "griffin-lim", "--temperature", "0.3"]) == 0
    assert load_model(tmp_path / "voice", "vocoder").config.temperature == 0.3
    assert main(["export", str(tmp_path / "one"), "--to", str(tmp_path / "voice"),
                 "--temperature", "0"]) == 2
    assert load_model(tmp_path / "voice", "vocoder").config.temperature == 0.3  # nothing written
    # --voicing fits the voice's voicing detector on the corpus's audio.
    for bad in (["--voicing", "1"], ["--voicing", "0", "--data", str(corpus)],
                ["--voicing", "1", "--data", str(tmp_path / "nowhere")]):
        assert main(["export", str(tmp_path / "one"), "--to", str(tmp_path / "voice"), *bad]) == 2, bad
        assert "voicing" not in read_config(tmp_path / "voice")["models"]  # nothing written
    assert main(["export", str(tmp_path / "one"), "--to", str(tmp_path / "voice"),
                 "--voicing", "1.5", "--data", str(corpus)]) == 0
    voicing = load_voice(tmp_path / "voice", require=()).voicing
    assert voicing.config.strength == 1.5 and voicing.linear.weight.abs().sum() > 0


# --- resuming --------------------------------------------------------------------------------

KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from tts.train.tasks.attention import AttentionTask
from tts.train.config import resolve_config
from tts.train.trainer import Trainer

class DiesMidStep(AttentionTask):
    calls = 0

    def loss(self, model, batch):
        DiesMidStep.calls += 1
        if DiesMidStep.calls == {kill_at}:  # the second micro-step of step 4: after one backward
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch)

train, task = resolve_config(AttentionTask, overrides={sets!r})
Trainer(DiesMidStep(task), train, sys.argv[1], sys.argv[2]).fit()
"""


def test_sigkill_then_resume_equals_uninterrupted(corpus, tmp_path):
    # Dropout on (the RNG states must come back), two micro-steps per step, and a checkpoint
    # in the middle of an epoch (2 steps per epoch): everything resuming has to restore.
    sets = COMMON + ACOUSTIC + ["max_steps=6", "accumulation_steps=2", "checkpoint_every=3", "lr=1e-2"]
    fit("attention", corpus, tmp_path / "whole", sets)

    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(kill_at=3 * 2 + 2, sets=sets))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, str(script), str(corpus), str(tmp_path / "run")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert (ckpt["step"], ckpt["epoch"], ckpt["position"]) == (3, 1, 2)

    # The command line resumes with the run's own settings.
    assert main(["attention", "--data", str(corpus), "--out", str(tmp_path / "run")]) == 0
    whole, run = losses(tmp_path / "whole"), losses(tmp_path / "run")
    assert sorted(run) == list(range(1, 7))
    for step in range(1, 7):
        assert run[step] == pytest.approx(whole[step], abs=1e-6), step
    assert_same_weights(final_weights(tmp_path / "run"), final_weights(tmp_path / "whole"), atol=1e-6)


def test_a_resume_keeps_the_runs_settings_over_its_preset_named_again(corpus, tmp_path, capsys):
    # Started with the cpu preset and a smaller batch; resumed with the preset named again
    # and only a longer schedule: the batch stays the run's, and a note names the preset's.
    run = tmp_path / "run"
    tiny = [s for s in COMMON + VOCODER if not s.startswith(("batch_size", "checkpoint_every", "eval_every"))]
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--preset", "cpu",
                 "--set", *tiny, "batch_size=3", "max_steps=1", "checkpoint_every=1"]) == 0
    capsys.readouterr()
    assert main(["vocoder", "--data", str(corpus), "--out", str(run), "--preset", "cpu", "--set", "max_steps=2"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--preset cpu left out" in notes[0] and "batch_size 8 (the run: 3)" in notes[0]
    config = json.loads((run / "config.json").read_text())
    assert (config["batch_size"], config["max_steps"], config["checkpoint_every"]) == (3, 2, 1)
    assert load_checkpoint(latest_checkpoint(run))["step"] == 2


def test_vocoder_resume_equals_uninterrupted(corpus, tmp_path):
    # Random crops are drawn from (seed, epoch, index): a resumed run must draw the same ones.
    sets = COMMON + VOCODER + ["lr=1e-2", "ema=0.9", "batch_size=2", "checkpoint_every=2"]
    fit("vocoder", corpus, tmp_path / "whole", sets + ["max_steps=6"])
    fit("vocoder", corpus, tmp_path / "run", sets + ["max_steps=3"])
    fit("vocoder", corpus, tmp_path / "run", sets + ["max_steps=6"])
    whole, run = losses(tmp_path / "whole"), losses(tmp_path / "run")
    for step in range(1, 7):
        assert run[step] == pytest.approx(whole[step], abs=1e-6), step
    assert_same_weights(final_weights(tmp_path / "run", "ema"), final_weights(tmp_path / "whole", "ema"), atol=1e-6)


class InterruptedAtStep2(AttentionTask):
    calls = 0

    def loss(self, model, batch):
        InterruptedAtStep2.calls += 1
        if InterruptedAtStep2.calls == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().loss(model, batch)


def test_a_resume_with_another_learning_rate_follows_it(corpus, tmp_path):
    # The schedule is the configuration's, not the checkpoint's: a run resumed with a new peak
    # or decay continues from its step on the new schedule (the optimizer state carries over).
    run = tmp_path / "run"
    fit("vocoder", corpus, run, [*COMMON, *VOCODER, "max_steps=2"])
    fit("vocoder", corpus, run, [*COMMON, *VOCODER, "max_steps=4", "lr=4e-4"])
    rates = {r["step"]: r["lr"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}
    assert rates == pytest.approx({1: 1e-3, 2: 1e-3, 3: 4e-4, 4: 4e-4})


def test_sigterm_checkpoints_at_the_step_boundary_and_stops(corpus, tmp_path):
    record = fit("attention", corpus, tmp_path / "run", COMMON + ACOUSTIC + ["max_steps=50"],
                 task_cls=InterruptedAtStep2)
    assert record["step"] == 2
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back
    # The run's config.json starts another run with the same settings.
    train, task = resolve_config(AttentionTask, file=tmp_path / "run" / "config.json")
    assert train.max_steps == 50 and task.model.decoder_dilations == (1, 2) and task.trim_db is None


def test_sigterm_after_a_steps_all_reduce_stops_at_the_next_step(corpus, tmp_path, monkeypatch):
    """The signal lands in the optimizer's update, after the step has shared its stop flags:
    it is kept for the next step, not lost."""
    step, calls = torch.optim.AdamW.step, []

    def step_then_signal(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_signal)
    record = fit("attention", corpus, tmp_path / "run", COMMON + ACOUSTIC + ["max_steps=8"])
    assert record["step"] == 3
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["step"] == 3


FAULT_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from tts.train.tasks.attention import AttentionTask
from tts.train.config import resolve_config
from tts.train.trainer import Trainer

FAULT = {fault!r}
save = torch.save
saves = 0

def save_then_die(obj, path, *args, **kwargs):
    # The process dies in the middle of writing the second checkpoint: half of it is on disk.
    global saves
    saves += 1
    save(obj, path, *args, **kwargs)
    if saves == 2:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

class Interrupted(AttentionTask):
    calls = 0

    def loss(self, model, batch):
        Interrupted.calls += 1
        if FAULT == "SIGINT" and Interrupted.calls == 3:  # Ctrl-C in the first micro-step of step 2
            os.kill(os.getpid(), signal.SIGINT)
        return super().loss(model, batch)

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started where it is ignored
if FAULT == "SIGKILL while a checkpoint is written":
    torch.save = save_then_die
train, task = resolve_config(AttentionTask, overrides={sets!r})
Trainer(Interrupted(task), train, sys.argv[1], sys.argv[2]).fit()
"""
# Dropout on, two micro-steps per step, checkpoints at step 3 and at the end (step 4).
FAULT_SETS = COMMON + ACOUSTIC + ["max_steps=4", "accumulation_steps=2", "checkpoint_every=3", "lr=1e-2"]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    fit("attention", corpus, run, FAULT_SETS)
    return run


@pytest.mark.parametrize("fault, exit_code, resumed_from", [
    ("SIGKILL while a checkpoint is written", -signal.SIGKILL, 3),  # the step-3 one; step 4's is cut
    ("SIGINT", 0, 2),  # checkpointed at the step boundary after the signal, then stopped
])
def test_a_run_stopped_by_a_fault_resumes_as_if_uninterrupted(corpus, tmp_path, uninterrupted, fault, exit_code,
                                                              resumed_from):
    script = tmp_path / "fault_run.py"
    script.write_text(FAULT_RUN.format(fault=fault, sets=FAULT_SETS))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    stopped = subprocess.run([sys.executable, str(script), str(corpus), str(run)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == exit_code, stopped.stderr[-3000:]
    # The newest complete checkpoint is found and loads; nothing half-written is taken for one.
    assert [step for step, _ in checkpoints(run)] == [resumed_from]
    assert load_checkpoint(latest_checkpoint(run))["step"] == resumed_from
    assert max(losses(run)) == (4 if fault.startswith("SIGKILL") else 2)

    assert main(["attention", "--data", str(corpus), "--out", str(run)]) == 0
    whole, resumed = losses(uninterrupted), losses(run)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in range(1, 5):
        assert resumed[step] == pytest.approx(whole[step], abs=1e-6), step
    assert_same_weights(final_weights(run), final_weights(uninterrupted), atol=1e-6)


def test_two_processes_resume_as_if_uninterrupted(corpus, tmp_path):
    # Dropout on: each rank's RNG state has to come back, not only the data order.
    sets = COMMON + ACOUSTIC + ["accumulation_steps=2", "lr=1e-2", "checkpoint_every=2"]
    args = ["attention", "--data", str(corpus), "--set", *sets]
    # One torchrun at a time: two --standalone launches at once can race for a port.
    first = finish(start_cli([*args, "max_steps=2", "--out", str(tmp_path / "run")], nproc=2))
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = finish(start_cli([*args, "max_steps=4", "--out", str(tmp_path / "run")], nproc=2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = finish(start_cli([*args, "max_steps=4", "--out", str(tmp_path / "whole")], nproc=2))
    assert whole.returncode == 0, whole.stderr[-3000:]
    one, two = losses(tmp_path / "whole"), losses(tmp_path / "run")
    assert sorted(two) == [1, 2, 3, 4]
    for step in range(1, 5):
        assert two[step] == pytest.approx(one[step], abs=1e-6), step
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert_same_weights(ckpt["model"], final_weights(tmp_path / "whole"), atol=1e-6)


ONE_RANK_FAULTS = """
import os, sys
import torch
torch.set_num_threads(1)
from tts.train.tasks.attention import AttentionTask
from tts.train.config import resolve_config
from tts.train.trainer import Trainer

class OneRankFaults(AttentionTask):
    calls = 0

    def loss(self, model, batch):
        OneRankFaults.calls += 1
        loss, scalars = super().loss(model, batch)
        rank = int(os.environ["RANK"])
        if rank == 1 and OneRankFaults.calls == 2:
            # Step 2: rank 1's loss is NaN, its gradient finite (so DDP's all-reduce of the
            # gradients does not carry the fault to rank 0; only the skip flag can).
            loss = loss + float("nan") * loss.detach()
        if rank == 0 and OneRankFaults.calls == 3:
            # Step 3: rank 0's loss is finite, its gradient NaN (sqrt's slope at 0 is infinite).
            p = next(model.parameters())
            loss = loss + 0.0 * torch.sqrt((p - p.detach()).abs().sum())
        return loss, scalars

train, task = resolve_config(AttentionTask, overrides={sets!r})
trainer = Trainer(OneRankFaults(task), train, sys.argv[1], sys.argv[2])
trainer.fit()
torch.save(trainer.model.state_dict(), os.path.join(sys.argv[2], f"rank{{os.environ['RANK']}}.pt"))
"""


def test_a_fault_on_one_rank_skips_the_step_on_every_rank(corpus, tmp_path):
    sets = COMMON + ACOUSTIC + ["max_steps=4", "checkpoint_every=1", "keep_checkpoints=5"]
    script = tmp_path / "one_rank_faults.py"
    script.write_text(ONE_RANK_FAULTS.format(sets=sets))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(corpus), str(run)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == [False, True, True, False]
    assert log[-1]["skipped_total"] == 2
    step1, step2, step3, step4 = (load_checkpoint(run / "checkpoints" / f"step-0000000{s}.pt")["model"]
                                  for s in (1, 2, 3, 4))
    assert_same_weights(step2, step1, atol=0)  # nothing applied, on rank 0 ...
    assert_same_weights(step3, step1, atol=0)
    assert all(torch.isfinite(v).all() for v in step4.values())
    rank0, rank1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert_same_weights(rank1, rank0, atol=0)  # ... and the ranks stayed identical
    assert_same_weights(rank0, step4, atol=0)


GROUP_FREED = """
import sys, weakref
import torch.distributed as dist
from tts.train.tasks.attention import AttentionTask
from tts.train.config import resolve_config
from tts.train.trainer import Trainer

class Watched(AttentionTask):
    group = None

    def loss(self, model, batch):
        if Watched.group is None:
            Watched.group = weakref.ref(dist.group.WORLD)
        return super().loss(model, batch)

train, task = resolve_config(AttentionTask, overrides={sets!r})
trainer = Trainer(Watched(task), train, sys.argv[1], sys.argv[2])
trainer.fit()
assert Watched.group is not None and Watched.group() is None, "the process group outlived fit()"
"""


def test_fit_frees_the_process_group_it_created(corpus, tmp_path):
    # A group that outlives fit() still has gloo worker threads while the interpreter shuts down,
    # where one of them can abort a process whose run succeeded. The trainer is kept alive here:
    # close() itself must free the group.
    script = tmp_path / "group_freed.py"
    script.write_text(GROUP_FREED.format(sets=COMMON + ACOUSTIC + ["max_steps=1"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           str(script), str(corpus), str(tmp_path / "run")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- faults and learning -----------------------------------------------------------------------

class NanAtStep2(AttentionTask):
    calls = 0

    def loss(self, model, batch):
        NanAtStep2.calls += 1
        loss, scalars = super().loss(model, batch)
        return (loss * float("nan") if NanAtStep2.calls == 2 else loss), scalars


def test_non_finite_step_is_skipped_and_counted(corpus, tmp_path):
    sets = COMMON + ACOUSTIC + ["max_steps=3", "checkpoint_every=1", "keep_checkpoints=5"]
    record = fit("attention", corpus, tmp_path / "run", sets, task_cls=NanAtStep2)
    assert record["step"] == 3 and record["skipped_total"] == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == [False, True, False]
    assert log[1]["loss"] is None and np.isfinite(log[2]["loss"])
    step1, step2, step3 = (load_checkpoint(tmp_path / "run" / "checkpoints" / f"step-0000000{s}.pt")
                           for s in (1, 2, 3))
    assert_same_weights(step1["model"], step2["model"], atol=0)  # nothing applied
    assert all(torch.isfinite(v).all() for v in step3["model"].values())
    assert step3["skipped"] == 1
    assert max(int(s["step"]) for s in step3["optimizer"]["state"].values()) == 2  # Adam stepped twice


def test_tiny_overfit_drives_loss_down(corpus, tmp_path):
    sets = COMMON + ACOUSTIC + NO_DROPOUT + ["max_steps=30", "batch_size=2", "eval_clips=6", "lr=1e-2"]
    fit("attention", corpus, tmp_path / "run", sets)
    log = losses(tmp_path / "run")
    assert log[30] < 0.3 * log[1]


def test_g2p_logs_phoneme_and_word_error_to_tensorboard(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [f"{a}{b}{c}" for a in "bcd" for b in "aeiou" for c in letters[:12]]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cmudict.dict").write_text("".join(f"{w} B AH1 T\n" for w in words))
    sets = ["model.embed_dim=8", "model.encoder_dim=16", "model.encoder_layers=1", "model.decoder_dim=16",
            "model.dropout=0", "eval_fraction=0.1", "eval_examples=2", "batch_size=4", "max_steps=2",
            "eval_every=2", "num_workers=0", "warmup_steps=0"]
    fit("g2p", tmp_path / "data", tmp_path / "run", sets)
    evaluation = json.loads((tmp_path / "run" / "eval.jsonl").read_text())
    events = assert_training_scalars(tmp_path / "run", [1, 2])
    for metric in ("per", "wer", "loss"):
        (scalar,) = events.Scalars(f"eval/{metric}")
        assert scalar.step == 2 and scalar.value == pytest.approx(evaluation[metric], rel=1e-6), metric
    assert any(tag.startswith("eval/examples") for tag in events.Tags()["tensors"])


# --- usage errors ---------------------------------------------------------------------------------

def test_usage_errors_exit_2_with_one_line(corpus, tmp_path, capsys):
    run = ["--out", str(tmp_path / "run")]
    cases = [
        ["nosuchtask", "--data", str(corpus), *run],
        ["attention", "--data", str(tmp_path / "missing"), *run],
        ["attention", "--data", str(corpus), *run, "--set", "no_such_key=1"],
        ["attention", "--data", str(corpus), *run, "--set", "lr=fast"],
        ["attention", "--data", str(corpus), *run, "--set", "lr"],
        ["attention", "--data", str(corpus)],
        ["attention", "--data", str(corpus), *run, "--config", str(tmp_path / "missing.json")],
        ["export", str(tmp_path / "empty"), "--to", str(tmp_path / "voice")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("train: error: "), (argv, err)

    # A folder that holds a run of another task, or a run while --no-resume is asked.
    fit("attention", corpus, tmp_path / "done", COMMON + ACOUSTIC + ["max_steps=1"])
    capsys.readouterr()
    for argv in (["vocoder", "--data", str(corpus), "--out", str(tmp_path / "done")],
                 ["attention", "--data", str(corpus), "--out", str(tmp_path / "done"), "--no-resume"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1

    proc = run_cli(["attention", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "data folder not found" in proc.stderr


def test_checkpoint_minutes_saves_by_the_clock(corpus, tmp_path, monkeypatch):
    """Where steps are no measure of time (a machine lent for minutes), a checkpoint is also
    due once checkpoint_minutes have passed since the last."""
    import tts.train.trainer as trainer_module

    clock = iter(range(0, 10**6, 25))  # every reading of the clock is 25 s later
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: float(next(clock)))
    sets = COMMON + VOCODER + ["max_steps=6", "checkpoint_every=1000", "keep_checkpoints=10", "checkpoint_minutes=1"]
    fit("vocoder", corpus, tmp_path / "run", sets)
    saved = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert saved[-1] == 6 and saved[0] < 6  # by the clock, long before checkpoint_every


def test_a_deadline_stops_the_run_at_a_step_checkpointed_and_it_resumes(corpus, tmp_path):
    cls = get_task("vocoder")
    train_config, task_config = resolve_config(cls, overrides=COMMON + VOCODER + ["max_steps=1000"])
    record = Trainer(cls(task_config), train_config, corpus, tmp_path / "run", deadline=time.monotonic()).fit()
    assert record["stopped_by"] == "deadline" and record["step"] == 1  # the first step sees it past
    assert latest_checkpoint(tmp_path / "run") is not None
    record = Trainer(cls(task_config), train_config, corpus, tmp_path / "run", deadline=time.monotonic() + 1.0).fit()
    assert record["stopped_by"] == "deadline" and 1 < record["step"] < 1000
    assert sorted(losses(tmp_path / "run")) == list(range(1, record["step"] + 1))
