"""Control over what is said and when: word and phoneme timings, SSML, pauses, a user
lexicon, subtitles, through the API and the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import srt
import webvtt
from voices import TINY_SAMPLES_PER_SYMBOL, make_tiny_voice

from tts import Synthesizer
from tts.text import to_phonemes
from tts.text.plan import Pause, Sentence, read_plan

SR = 16000


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return Synthesizer.load(make_tiny_voice(tmp_path_factory.mktemp("v") / "tiny"), vocoder="griffin-lim")


def seconds(text: str) -> float:
    """What the tiny voice takes for one sentence: every symbol (EOS too) the same time."""
    return (len(to_phonemes(text)) + 1) * TINY_SAMPLES_PER_SYMBOL / SR


def test_words_point_at_what_was_written_even_where_the_frontend_expanded_it():
    text = 'Dr. Smith paid $3.50 on 3/4/2025.  He said "hello, world."'
    plan = list(read_plan(text))
    assert [type(step) for step in plan] == [Sentence, Sentence]
    written = [[text[a:b] for a, b in step.sources] for step in plan]
    assert written[0][:4] == ["Dr.", "Smith", "paid", "$3.50"] and set(written[0][4:8]) == {"$3.50"}
    assert written[0][-1] == "3/4/2025" and written[1] == ["He", "said", "hello", "world"]
    steps = list(read_plan("One. Two.\n\nThree.", sentence_pause=0.2, paragraph_pause=0.5))
    assert [step if isinstance(step, Pause) else step.text for step in steps] == \
        ["one.", Pause(0.2), "two.", Pause(0.5), "three."]


def test_timings_tile_the_audio_and_each_chunk_carries_the_words_it_completes(synth):
    text = "Dr. Smith paid $3.50. Bye now."
    chunks = list(synth.stream(text, sentence_pause=0.25))
    audio = np.concatenate([c.audio for c in chunks])
    words = [w for c in chunks for w in c.words]
    assert [w.word for w in words] == ["Dr.", "Smith", "paid", "$3.50.", "Bye", "now."]
    assert [text[w.offset:w.offset + w.length] for w in words] == ["Dr.", "Smith", "paid", "$3.50", "Bye", "now"]
    assert [w.sentence_end for w in words] == [False, False, False, True, False, True]
    assert all(a.end <= b.start for a, b in zip(words, words[1:])) and words[-1].end <= len(audio) / SR
    # The second sentence starts after the first and the pause, to the frame.
    first = seconds("Dr. Smith paid $3.50.")
    assert words[4].start == pytest.approx(first + 0.25, abs=1e-6)
    done = 0.0
    for chunk in chunks:  # a chunk holds the end of each word it carries
        done += len(chunk.audio) / SR
        assert all(w.end <= done + 1e-6 for w in chunk.words)
    phonemes = [p for c in chunks for p in c.phoneme_timings]
    assert [p.phoneme for p in phonemes][:3] == ["D", "AA1", "K"] and phonemes[0].start == 0.0


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_timings_follow_the_speaking_rate(synth, rate):
    _, slow, _ = synth.synthesize_with_timings("Hello there.", rate=rate)
    _, normal, _ = synth.synthesize_with_timings("Hello there.")
    # Faster speech is the audio sped up (WSOLA), whose frames land within half a frame of
    # where an even speed-up puts them; the sentence still takes 1 / rate of the time.
    near = 1e-6 if rate < 1.0 else 2 * 200 / 16000
    assert [w.end for w in slow] == pytest.approx([w.end / rate for w in normal], abs=near)
    assert slow[-1].end == pytest.approx(normal[-1].end / rate, abs=200 / 16000 + 1e-6)


def test_faster_speech_is_the_same_speech_sped_up(synth):
    """Past rate 1 the model keeps its pace (the same mel) and the audio is sped up: half the
    samples at rate 2, each chunk's words within the audio given out so far."""
    text = "Hello there, how are you today?"
    normal = list(synth.stream(text))
    fast = list(synth.stream(text, rate=2.0))
    assert np.array_equal(fast[0].mel, normal[0].mel) and np.array_equal(synth.mel(text, rate=2.0), synth.mel(text))
    n, f = sum(len(c.audio) for c in normal), sum(len(c.audio) for c in fast)
    assert abs(f - n / 2) <= 0.032 * SR  # a WSOLA frame
    done = 0.0
    for chunk in fast:
        done += len(chunk.audio) / SR
        assert all(w.end <= done + 1e-6 for w in chunk.words)
    slower = len(synth.synthesize(text, rate=0.75))
    assert slower > n  # slower is the model's own durations, longer


def test_a_break_adds_its_silence_and_a_rate_stretches_only_its_span(synth):
    hello, there = len(synth.synthesize("Hello")), len(synth.synthesize("there."))
    broken, words, _ = synth.synthesize_with_timings('<speak>Hello <break time="700ms"/> there.</speak>')
    assert len(broken) == hello + round(0.7 * SR) + there
    assert not broken[hello:hello + round(0.7 * SR)].any()  # silence, exactly there
    assert words[1].start == pytest.approx((hello + 0.7 * SR) / SR, abs=1e-6)
    _, normal, _ = synth.synthesize_with_timings("<speak>Say slowly now.</speak>")
    _, slow, _ = synth.synthesize_with_timings('<speak>Say <prosody rate="50%">slowly</prosody> now.</speak>')
    length = lambda w: w.end - w.start  # noqa: E731
    assert length(slow[1]) == pytest.approx(2 * length(normal[1]), abs=1e-6)
    assert length(slow[0]) == pytest.approx(length(normal[0]), abs=1e-6)


def test_say_as_characters_spells_and_sub_reads_its_alias(synth):
    spelled = [c for c in synth.stream('<speak><say-as interpret-as="characters">abc</say-as></speak>')]
    assert spelled[0].phonemes == to_phonemes("A B C")
    subbed = [c for c in synth.stream('<speak><sub alias="World Wide Web">WWW</sub></speak>')]
    assert subbed[0].phonemes == to_phonemes("World Wide Web")
    assert [w.word for c in subbed for w in c.words] == ["WWW"]


def test_pauses_between_sentences_and_paragraphs(synth):
    text = "One. Two.\n\nThree."
    base = len(synth.synthesize(text))
    assert len(synth.synthesize(text, sentence_pause=0.3)) == base + round(0.3 * SR)
    assert len(synth.synthesize(text, paragraph_pause=0.5)) == base + round(0.5 * SR)
    assert len(synth.synthesize(text, sentence_pause=0.3, paragraph_pause=0.5)) == base + round(0.8 * SR)
    with pytest.raises(ValueError, match="pauses"):
        synth.synthesize(text, sentence_pause=-1)


def test_a_lexicon_entry_changes_its_word_and_only_its_word(tmp_path):
    voice = make_tiny_voice(tmp_path / "v")
    (tmp_path / "my.dict").write_text(";;; mine\nTOMATO  T AH0 M AA1 T OW2\n", encoding="utf-8")
    plain = Synthesizer.load(voice, vocoder="griffin-lim")
    mine = Synthesizer.load(voice, vocoder="griffin-lim", lexicon=tmp_path / "my.dict")
    before = next(plain.stream("A tomato, please.")).phonemes
    after = next(mine.stream("A tomato, please.")).phonemes
    assert after != before and "AA1" in after
    assert [p for p in before if p not in ("T", "AH0", "M", "EY1", "OW2")] == \
        [p for p in after if p not in ("T", "AH0", "M", "AA1", "OW2")]
    (tmp_path / "bad.dict").write_text("TOMATO  T XX9\n", encoding="utf-8")
    with pytest.raises(Exception, match="line 1"):
        Synthesizer.load(voice, lexicon=tmp_path / "bad.dict")


def synthesize(*args, stdin: str | None = None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tts", *map(str, args)], capture_output=True, timeout=timeout,
                          input=None if stdin is None else stdin.encode())


def test_command_line_writes_timings_and_subtitles_players_read(tmp_path):
    voice = make_tiny_voice(tmp_path / "v")
    text = "Dr. Smith paid $3.50. Then he left.\n\nThe end."
    out = tmp_path / "o.wav"
    r = synthesize(text, "--voice", voice, "--vocoder", "griffin-lim", "-o", out, "--timings", tmp_path / "t.json",
                   "--subtitles", tmp_path / "s.vtt", "--paragraph-pause", "0.5")
    assert r.returncode == 0, r.stderr.decode()
    record = json.loads((tmp_path / "t.json").read_text())
    assert [w["word"] for w in record["words"]][:4] == ["Dr.", "Smith", "paid", "$3.50."]
    assert record["phonemes"][0]["phoneme"] == "D"
    captions = webvtt.read(str(tmp_path / "s.vtt"))
    assert captions[0].text == "Dr. Smith paid $3.50." and captions[-1].text == "The end."
    assert captions[0].start == "00:00:00.000"
    r = synthesize(text, "--voice", voice, "--vocoder", "griffin-lim", "-o", out, "--subtitles", tmp_path / "s.srt")
    assert r.returncode == 0
    subs = list(srt.parse((tmp_path / "s.srt").read_text()))
    assert [s.content for s in subs][-1] == "The end." and subs[0].start.total_seconds() == 0.0


@pytest.mark.parametrize("ssml, message", [
    ("<speak>Hi <break time='1s'> there</speak>", "SSML line 1, column"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     "<speak>&lol2;</speak>", "not allowed"),
    ('<!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>', "not allowed"),
    ("<speak>" + "<s>" * 100_000 + "deep", "deep"),
])
def test_bad_ssml_is_one_line_and_nothing_is_written(tmp_path, ssml, message):
    voice = make_tiny_voice(tmp_path / "v")
    out = tmp_path / "o.wav"
    r = synthesize("--ssml", "--voice", voice, "-o", out, "--timings", tmp_path / "t.json", stdin=ssml)
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and message in err[0], (ssml[:50], err)
    assert not out.exists() and not (tmp_path / "t.json").exists()


def test_on_the_bundled_voice_each_word_holds_its_sound_and_the_break_is_silent():
    """A real, trained voice: the speech of each word lies inside its timing, and the forced
    pause between two words is silence."""
    voice = Synthesizer.load(vocoder="griffin-lim")
    audio, words, _ = voice.synthesize_with_timings(
        '<speak>Seven <break time="800ms"/> bright lanterns glowed.</speak>')
    assert [w.word for w in words] == ["Seven", "bright", "lanterns", "glowed."]
    rms = lambda a, b: float(np.sqrt(np.mean(audio[int(a * SR):int(b * SR)] ** 2)))  # noqa: E731
    silence = rms(words[0].end + 0.1, words[1].start - 0.1)
    assert silence < 1e-4  # the break: zeros, exactly where the timings say
    for w in words:
        assert rms(w.start, w.end) > 0.02, w  # where the word is, there is its sound
    # Outside the words, little is said: the loud part of the audio lies inside them.
    inside = sum(np.sum(audio[int(w.start * SR):int(w.end * SR)] ** 2) for w in words)
    assert inside > 0.9 * np.sum(audio ** 2)
