"""`python -m tts.train adapt`: a folder of recordings to a voice, end to end on a tiny voice."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from voices import make_tiny_voice

from tts import Synthesizer
from tts.train.__main__ import main
from tts.voice import load_model

SENTENCES = ["The cat sat on the mat.", "A dog ran in the park.", "We had tea at noon.",
             "Sun and rain came and went.", "She read a book by the fire."]


def make_recordings(folder, n=14, seconds=5.0, rate=22050):
    """Speech-like tones at a rate the engine does not use, each with its transcript beside it."""
    folder.mkdir()
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n):
        pitch = 110 + 7 * i + 20 * np.sin(2 * np.pi * 0.5 * t)
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)
        sf.write(folder / f"take{i:02d}.wav", wave.astype(np.float32), rate)
        (folder / f"take{i:02d}.txt").write_text(SENTENCES[i % len(SENTENCES)])
    return folder


def judges_installed() -> bool:
    from tts.train.adapt import _judges_installed

    return _judges_installed()


def test_adapt_makes_a_voice_that_speaks_and_resumes(tmp_path, capsys):
    base = make_tiny_voice(tmp_path / "base")
    recordings = make_recordings(tmp_path / "recordings")
    voice = tmp_path / "mine"
    judged = judges_installed()
    # Minutes enough that both runs get a share after a slow start: a fresh install's first
    # imports come off the top of the budget (37 s of a 48 s one on a loaded machine).
    argv = ["adapt", "--data", str(recordings), "--to", str(voice), "--from", str(base), "--minutes", "2",
            "--wavenet-share", "0.65", "--judge" if judged else "--no-judge"]
    assert main(argv) == 0
    card = (voice / "MODEL_CARD.md").read_text()
    assert "14 clips" in card and "2 clips held out" in card
    assert ("## Judged" in card and "the speaker's recordings" in card and "speaks with" in card) == judged
    adapted, before = load_model(voice, "acoustic"), load_model(base, "acoustic")
    assert any(not torch.equal(a, b) for a, b in zip(adapted.state_dict().values(), before.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(load_model(voice, "vocoder").state_dict().values(),
                                                    load_model(base, "vocoder").state_dict().values()))
    audio = Synthesizer.load(voice).synthesize("The cat ran.")
    assert len(audio) > 0 and np.isfinite(audio).all()
    steps = [line for line in (tmp_path / "mine.adapt" / "parallel" / "log.jsonl").read_text().splitlines()]
    # Again: the same adaptation, its budget spent, so it only writes the voice again.
    assert main(argv) == 0
    assert (tmp_path / "mine.adapt" / "parallel" / "log.jsonl").read_text().splitlines() == steps


def error_line(capsys) -> str:
    """The one line a refused command ends with (progress bars may come before it), and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_adapt_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys):
    base = make_tiny_voice(tmp_path / "base")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["adapt", "--data", str(empty), "--to", str(tmp_path / "v"), "--from", str(base)]) == 2
    assert "no audio" in error_line(capsys).lower()
    taken = tmp_path / "taken"
    taken.mkdir()
    recordings = make_recordings(tmp_path / "recordings", n=2)
    assert main(["adapt", "--data", str(recordings), "--to", str(taken), "--from", str(base)]) == 2
    assert "--replace" in error_line(capsys)
    assert main(["adapt", "--data", str(recordings), "--to", str(tmp_path / "v2"), "--from", str(base)]) == 2
    assert "at least 60 s" in error_line(capsys)
    assert not (tmp_path / "v2").exists()
    assert main(["adapt", "--data", str(recordings), "--to", str(tmp_path / "v3"), "--minutes", "0"]) == 2
    assert "--minutes" in error_line(capsys)
    other = make_recordings(tmp_path / "other", n=1)
    assert main(["adapt", "--data", str(other), "--to", str(tmp_path / "v2"), "--from", str(base)]) == 2
    assert "holds the adaptation of" in error_line(capsys)


def test_adapt_by_default_keeps_the_base_wavenet(tmp_path, capsys):
    base = make_tiny_voice(tmp_path / "base")
    recordings = make_recordings(tmp_path / "recordings")
    voice = tmp_path / "mine"
    assert main(["adapt", "--data", str(recordings), "--to", str(voice), "--from", str(base), "--minutes", "1",
                 "--no-judge"]) == 0  # the default share
    assert all(torch.equal(a, b) for a, b in zip(load_model(voice, "vocoder").state_dict().values(),
                                                 load_model(base, "vocoder").state_dict().values()))
    assert not (tmp_path / "mine.adapt" / "vocoder").exists()
    card = (voice / "MODEL_CARD.md").read_text()
    assert "| acoustic model |" in card and "| WaveNet |" not in card
    assert main(["adapt", "--data", str(recordings), "--to", str(tmp_path / "v"), "--from", str(base),
                 "--wavenet-share", "1"]) == 2
    assert "--wavenet-share" in error_line(capsys)
