"""Subtitles: grouping words into cues, and WebVTT / SubRip that real parsers read back."""

import html
import os
import stat

import pytest
import srt
import webvtt

from tts.errors import AudioFileError
from tts.subtitles import Cue, WordTiming, cues, to_srt, to_webvtt, write_subtitles


def timed(text: str, start: float = 0.0, step: float = 0.4, length: float = 0.3) -> list[WordTiming]:
    """The words of ``text``, one every ``step`` seconds from ``start``, offsets into ``text``."""
    out, offset = [], 0
    for i, word in enumerate(text.split()):
        offset = text.index(word, offset)
        out.append(WordTiming(word, start + i * step, start + i * step + length, offset, len(word)))
        offset += len(word)
    return out


def texts(grouped: list[Cue]) -> list[str]:
    return [c.text for c in grouped]


# --- cues ------------------------------------------------------------------------------------


def test_a_cue_spans_its_words():
    words = timed("Hello, world.", start=0.12)
    (cue,) = cues(words)
    assert (cue.text, cue.start, cue.end) == ("Hello, world.", 0.12, pytest.approx(0.82))
    assert cue.words == tuple(words)


def test_sentence_ends_close_a_cue():
    assert texts(cues(timed('One two. Three? Four! "Five." (six.) seven'))) == [
        "One two.", "Three?", "Four!", '"Five."', "(six.)", "seven"]


def test_limits_on_words_characters_seconds_and_gaps():
    many = timed("a b c d e f g h i j k l m n o")
    assert [len(c.words) for c in cues(many)] == [7, 7, 1]
    assert [len(c.words) for c in cues(many, max_words=4)] == [4, 4, 4, 3]
    long_words = timed("internationalization considerations notwithstanding whatsoever")
    assert texts(cues(long_words)) == ["internationalization considerations",
                                       "notwithstanding whatsoever"]
    assert all(len(c.text) <= 42 for c in cues(long_words))
    slow = timed("one two three four five", step=1.0, length=0.9)
    assert [len(c.words) for c in cues(slow)] == [3, 2]  # 3 s from the first start
    gap = timed("before the", step=0.3) + timed("pause after", start=3.0, step=0.3)
    assert texts(cues(gap)) == ["before the", "pause after"]


def test_a_word_over_every_limit_is_a_cue_of_its_own():
    words = [WordTiming("x" * 60, 0.0, 5.0, 0, 60), WordTiming("y", 5.1, 5.2, 61, 1)]
    assert texts(cues(words)) == ["x" * 60, "y"]


def test_empty_words_are_skipped_and_no_words_no_cues():
    assert cues([]) == []
    assert texts(cues([WordTiming(" ", 0, 1, 0, 1), WordTiming("hi", 1, 2, 2, 2)])) == ["hi"]


@pytest.mark.parametrize("words, message", [
    ([WordTiming("a", 1.0, 0.5, 0, 1)], r"word 0 \('a'\) has times 1.0-0.5 s"),
    ([WordTiming("a", -1.0, 0.5, 0, 1)], r"word 0 \('a'\) has times -1.0-0.5 s"),
    ([WordTiming("a", 2.0, 2.5, 0, 1), WordTiming("b", 1.0, 1.5, 2, 1)],
     r"word 1 \('b'\) starts at 1.0 s, before"),
])
def test_times_that_go_backwards_are_refused(words, message):
    with pytest.raises(ValueError, match=message):
        cues(words)


# --- formats ---------------------------------------------------------------------------------

# Past one hour, past ten hours, and times that round up to the next second or minute.
WORDS = (timed("The first words.", start=0.0) + timed("An hour in, still talking.", start=3600.25)
         + timed("Rounding up & <escaping> -->", start=36_059.9996)
         + [WordTiming("end.", 40_000.0, 40_001.0, 0, 4)])


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def test_webvtt_round_trips_through_webvtt_py():
    grouped = cues(WORDS)
    vtt = to_webvtt(grouped)
    assert vtt.startswith("WEBVTT\n\n")
    parsed = list(webvtt.from_string(vtt))
    assert len(parsed) == len(grouped) == 4
    for caption, cue in zip(parsed, grouped):
        h, m, s, ms = caption.start_time.to_tuple()
        assert ((h * 60 + m) * 60 + s) * 1000 + ms == milliseconds(cue.start)
        h, m, s, ms = caption.end_time.to_tuple()
        assert ((h * 60 + m) * 60 + s) * 1000 + ms == milliseconds(cue.end)
        assert html.unescape(caption.text) == cue.text
    assert [c.start for c in parsed[1:]] == ["01:00:00.250", "10:01:00.000", "11:06:40.000"]


def test_srt_round_trips_through_srt():
    grouped = cues(WORDS)
    parsed = list(srt.parse(to_srt(grouped)))
    assert [s.index for s in parsed] == [1, 2, 3, 4]
    for subtitle, cue in zip(parsed, grouped):
        assert subtitle.start.total_seconds() * 1000 == pytest.approx(milliseconds(cue.start))
        assert subtitle.end.total_seconds() * 1000 == pytest.approx(milliseconds(cue.end))
        assert subtitle.content == cue.text
    assert "\n10:01:00,000 --> 10:01:01,900\n" in to_srt(grouped)


def test_empty_subtitles():
    assert to_webvtt([]) == "WEBVTT\n"
    assert to_srt([]) == ""
    assert list(webvtt.from_string(to_webvtt([]))) == []


# --- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.vtt", "OUT.SRT"])
def test_write_subtitles_by_suffix(tmp_path, name):
    path = write_subtitles(tmp_path / name, WORDS)
    text = path.read_text(encoding="utf-8")
    if name.endswith("vtt"):
        assert text == to_webvtt(cues(WORDS))
        assert len(list(webvtt.read(path))) == 4
    else:
        assert text == to_srt(cues(WORDS))
    assert os.listdir(tmp_path) == [name]  # no temporary file left beside it
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_subtitles_passes_cue_limits(tmp_path):
    path = write_subtitles(tmp_path / "a.srt", timed("a b c d"), max_words=2)
    assert [s.content for s in srt.parse(path.read_text())] == ["a b", "c d"]


def test_write_subtitles_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.srt"
    path.write_text("old")
    write_subtitles(path, timed("new words"))
    assert "new words" in path.read_text()


@pytest.mark.parametrize("name", ["out.txt", "out", "out.vtt.bak"])
def test_other_suffixes_are_refused_in_one_line(tmp_path, name):
    with pytest.raises(ValueError, match=r"^subtitles are written as \.vtt \(WebVTT\) or \.srt") as e:
        write_subtitles(tmp_path / name, WORDS)
    assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(AudioFileError, match=r"^cannot write .*out\.vtt: No such file"):
        write_subtitles(tmp_path / "missing" / "out.vtt", WORDS)
