"""Sentence splitting: boundaries, paragraphs, and the length bound on normalized chunks."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts.text.normalize import NothingToSpeakError, normalize
from tts.text.sentences import MAX_CHARS, SentenceBuffer, split_sentences

_WORD = r"[a-z]+(?:'[a-z]+)*"
_OVERRIDE = r"\{[A-Z]+[0-9]?(?: [A-Z]+[0-9]?)*\}"
_TOKEN = rf"(?:{_WORD}|[A-Z]|{_OVERRIDE})[,.?!]?"
CONTRACT = re.compile(rf"{_TOKEN}(?: {_TOKEN})*")


@pytest.mark.parametrize(
    "text, chunks",
    [
        ("Dr. Smith went home. He slept.", ["doctor smith went home.", "he slept."]),
        ("Pi is 3.14. It never ends.", ["pi is three point one four.", "it never ends."]),
        ("We met at 9 a.m. Then we ate.", ["we met at nine A M.", "then we ate."]),
        ("We met at 9 a.m. on Monday.", ["we met at nine A M on monday."]),
        ("Use a tool, e.g. a hammer. Done.", ["use a tool, for example a hammer.", "done."]),
        ("J. R. R. Tolkien wrote it.", ["J R R tolkien wrote it."]),
        ("The U.S. Army is big. He lives in the U.S. Then he left.",
         ["the U S army is big.", "he lives in the U S.", "then he left."]),
        ("Mr. and Mrs. Smith met St. John.", ["mister and missus smith met saint john."]),
        ("Write to jane.doe@example.com. Visit example.com/docs today.",
         ["write to jane dot doe at example dot com.",
          "visit example dot com slash docs today."]),
        ("Well... maybe. Wait... What?", ["well, maybe.", "wait.", "what?"]),
        ("Really? Yes! Fine.", ["really?", "yes!", "fine."]),
        ('"Hi!" she said.', ["hi! she said."]),
        ("It costs $3.50. That is cheap.", ["it costs three dollars and fifty cents.",
                                            "that is cheap."]),
    ],
)
def test_sentence_boundaries(text, chunks):
    assert split_sentences(text) == chunks


def test_paragraphs_end_sentences_and_line_breaks_do_not():
    text = "Chapter One\n\nIt was a dark night\nand the rain fell.\n\n\n  The end"
    assert split_sentences(text) == [
        "chapter one", "it was a dark night and the rain fell.", "the end",
    ]


def test_sentences_with_nothing_to_speak_are_skipped():
    assert split_sentences("Hello. 😀!!! World.") == ["hello.", "world."]


@pytest.mark.parametrize("text", ["", "  \n\n ", "... !!! 😀", "\x00"])
def test_nothing_at_all_raises(text):
    with pytest.raises(NothingToSpeakError, match="nothing to speak"):
        split_sentences(text)


def test_default_bound():
    assert MAX_CHARS == 250
    sentence = " ".join(["word"] * 200) + "."
    chunks = split_sentences(sentence)
    assert len(chunks) > 1
    assert all(len(c) <= MAX_CHARS for c in chunks)
    assert " ".join(chunks) == normalize(sentence)  # only cut between words


def test_long_sentences_break_at_commas_first():
    text = "alpha beta gamma, delta epsilon zeta, eta theta iota, kappa lambda mu."
    chunks = split_sentences(text, max_chars=40)
    assert chunks == ["alpha beta gamma, delta epsilon zeta,", "eta theta iota, kappa lambda mu."]


def test_clause_longer_than_bound_breaks_between_words():
    text = "one two three four five six seven eight nine ten, eleven."
    chunks = split_sentences(text, max_chars=20)
    assert all(len(c) <= 20 for c in chunks)
    assert " ".join(chunks) == normalize(text)


def test_word_longer_than_bound_is_cut():
    chunks = split_sentences("a" * 600 + ".")
    assert chunks == ["a" * 250, "a" * 250, "a" * 100 + "."]


def test_overrides_stay_whole():
    text = " ".join(["word"] * 10) + " {HH AH0 L OW1} " + " ".join(["word"] * 10)
    chunks = split_sentences(text, max_chars=30)
    assert any("{HH AH0 L OW1}" in c for c in chunks)
    assert all(len(c) <= 30 and CONTRACT.fullmatch(c) for c in chunks)


def test_override_longer_than_bound_is_cut_between_phonemes():
    override = "{" + " ".join(["AH0"] * 20) + "}"
    chunks = split_sentences(override + ".", max_chars=16)
    assert all(len(c) <= 16 and CONTRACT.fullmatch(c) for c in chunks)
    phonemes = [p for c in chunks for p in c.strip("{}.").replace("} {", " ").split()]
    assert phonemes == ["AH0"] * 20


def test_bound_too_small():
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("hello", max_chars=3)


_FRAGMENTS = [
    "Dr.", "U.S.", "e.g.", "a.m.", "3.5", "...", ".", ". ", "? ", "! ", "\n\n", "\n", " ", " ",
    "Then", "the", "word", "supercalifragilisticexpialidocious", ",", "{HH AH0 L OW1}",
    "$1.50", "1984", "FBI", "jane@example.com", "😀", "A", "I", "J.",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(max_size=120), st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join)),
    st.integers(min_value=8, max_value=300),
)
def test_chunks_are_bounded_and_well_formed(text, max_chars):
    try:
        chunks = split_sentences(text, max_chars)
    except NothingToSpeakError:
        return
    assert chunks
    for chunk in chunks:
        assert 0 < len(chunk) <= max_chars, (text, max_chars, chunk)
        assert CONTRACT.fullmatch(chunk), (text, max_chars, chunk)


def test_words_are_only_cut_when_longer_than_the_bound():
    text = "don't " * 60
    chunks = split_sentences(text, max_chars=40)
    assert all(w == "don't" for c in chunks for w in c.split())


def _chunks(pieces: list[str]) -> list[str]:
    out = []
    for piece in pieces:
        try:
            out += split_sentences(piece)
        except NothingToSpeakError:
            pass
    return out


def test_sentence_buffer_hands_out_sentences_as_they_complete():
    buffer = SentenceBuffer()
    assert buffer.feed("Dr") == []
    assert buffer.feed(". Smith went ho") == []
    assert buffer.feed("me. He") == []  # "He" may still be "Hey" or "He." ...
    assert buffer.feed(" slept") == ["Dr. Smith went home."]
    assert buffer.feed(". We met at 9 a.m. The") == ["He slept."]
    assert buffer.feed("n we ate.\n") == ["We met at 9 a.m."]
    assert buffer.feed("\nNext") == ["Then we ate."]  # a paragraph ended
    assert buffer.pending == len("Next")
    assert buffer.flush() == ["Next"]
    assert buffer.pending == 0 and buffer.flush() == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(max_size=120), st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join)),
    st.data(),
)
def test_sentence_buffer_cuts_like_the_whole_text(text, data):
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=30)))
    buffer = SentenceBuffer()
    pieces = [s for a, b in zip([0] + cuts, cuts + [len(text)]) for s in buffer.feed(text[a:b])]
    pieces += buffer.flush()
    try:
        whole = split_sentences(text)
    except NothingToSpeakError:
        whole = []
    assert _chunks(pieces) == whole
