import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.text.g2p import (
    G2P,
    LETTER_NAMES,
    apply_rules,
    letter_to_sound,
    parse_override,
    spell,
    word_to_phonemes,
)
from tts.text.lts_rules import RULES
from tts.train.tasks.g2p import edit_distance
from tts.text.symbols import PHONEMES

PHONEME_SET = set(PHONEMES)


def primary_stresses(phonemes):
    return sum(p.endswith("1") for p in phonemes)


def strip_stress(phonemes):
    return [p.rstrip("012") for p in phonemes]


# --- dictionary, letters, article ---------------------------------------------------------


def test_dictionary_words_take_the_first_pronunciation():
    assert word_to_phonemes("hello") == ["HH", "AH0", "L", "OW1"]
    assert word_to_phonemes("doctor") == ["D", "AA1", "K", "T", "ER0"]
    assert word_to_phonemes("world") == ["W", "ER1", "L", "D"]


def test_dictionary_pronunciations_are_copies():
    word_to_phonemes("hello").append("Z")
    assert word_to_phonemes("hello") == ["HH", "AH0", "L", "OW1"]


def test_spelled_letters_say_their_names():
    assert word_to_phonemes("A") == ["EY1"]
    assert word_to_phonemes("B") == ["B", "IY1"]
    assert word_to_phonemes("W") == ["D", "AH1", "B", "AH0", "L", "Y", "UW0"]
    assert word_to_phonemes("Z") == ["Z", "IY1"]
    assert word_to_phonemes("I") == ["AY1"]
    assert sorted(LETTER_NAMES) == [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for name in LETTER_NAMES.values():
        assert set(name) <= PHONEME_SET and primary_stresses(name) == 1


def test_lowercase_a_is_the_unstressed_article():
    assert word_to_phonemes("a") == ["AH0"]


def test_spell():
    assert spell("fbi") == ["EH1", "F", "B", "IY1", "AY1"]
    assert spell("a-1") == ["EY1"]


# --- possessives and contractions ---------------------------------------------------------

# A small lexicon makes the rules visible: none of these forms is in it.
LEXICON = {
    "john": [["JH", "AA1", "N"]],
    "kate": [["K", "EY1", "T"]],
    "rose": [["R", "OW1", "Z"]],
    "she": [["SH", "IY1"]],
    "it": [["IH1", "T"]],
    "could": [["K", "UH1", "D"]],
    "dogs": [["D", "AO1", "G", "Z"]],
}


@pytest.mark.parametrize(
    "word, expected",
    [
        ("john's", "JH AA1 N Z"),  # voiced
        ("kate's", "K EY1 T S"),  # voiceless
        ("rose's", "R OW1 Z IH0 Z"),  # sibilant
        ("dogs'", "D AO1 G Z"),  # plural possessive sounds as the plural
        ("she'll", "SH IY1 L"),
        ("it'll", "IH1 T AH0 L"),
        ("could've", "K UH1 D AH0 V"),
        ("couldn't", "K UH1 D AH0 N T"),
        ("she'd", "SH IY1 D"),
        ("it's", "IH1 T S"),
    ],
)
def test_possessives_and_contractions_follow_the_stem(word, expected):
    assert G2P(lexicon=LEXICON).word_to_phonemes(word) == expected.split()


def test_possessive_of_dictionary_and_unknown_words():
    assert word_to_phonemes("john's") == ["JH", "AA1", "N", "Z"]  # in CMUdict itself
    assert word_to_phonemes("blorp's") == letter_to_sound("blorp") + ["S"]
    assert word_to_phonemes("zyxqa's")[-1] == "Z"


# --- letter-to-sound fallback -------------------------------------------------------------


def test_every_rule_compiles_and_every_letter_has_a_default():
    for letter, rules in RULES.items():
        assert rules, letter
        # The last rule consumes the letter alone whatever surrounds it, so a match exists.
        assert re.fullmatch(r"\[.\]=.*", rules[-1]), (letter, rules[-1])
        for rule in rules:
            assert rule.index("[") + 1 < rule.index("]") < rule.index("=")
    assert set("abcdefghijklmnopqrstuvwxyz") <= set(RULES)
    apply_rules("compile every rule")  # a malformed rule or phoneme raises here


@pytest.mark.parametrize(
    "word, expected",
    [
        ("cat", "K AE1 T"),
        ("make", "M EY1 K"),
        ("phone", "F OW1 N"),
        ("night", "N AY1 T"),
        ("ship", "SH IH1 P"),
        ("thinking", "TH IH1 NG K IH0 NG"),
        ("nation", "N EY1 SH AH0 N"),
        ("question", "K W EH1 S CH AH0 N"),
        ("measure", "M EH1 ZH ER0"),
        ("vision", "V IH1 ZH AH0 N"),
        ("around", "AH0 R AW1 N D"),
        ("rough", "R AH1 F"),
        ("fantastic", "F AE0 N T AE1 S T IH0 K"),
    ],
)
def test_letter_to_sound_on_regular_words(word, expected):
    assert letter_to_sound(word) == expected.split()


def test_letter_to_sound_is_close_to_the_dictionary_on_common_words():
    g2p = G2P()
    words = (
        "the of and to in is you that it he was for on are as with his they at be this "
        "have from or one had by word but not what all were we when your can said there use "
        "each which she do how their if will up other about out many then them these so some "
        "her would make like him into time has look two more write go see number no way "
        "could people my than first water been call who oil its now find long down day did "
        "get come made may part"
    ).split()
    errors = total = 0
    for word in words:
        ref, hyp = strip_stress(g2p.lookup(word)), strip_stress(letter_to_sound(word))
        errors += edit_distance(hyp, ref)
        total += len(ref)
    assert errors / total < 0.06  # the rules as published give 3.4% here




@pytest.mark.parametrize("word", ["blorptastic", "zyxq", "snorfle", "quizzaciously", "xkcd"])
def test_unknown_words_use_the_fallback(word):
    g2p = G2P()
    assert g2p.lookup(word) is None
    phonemes = g2p.word_to_phonemes(word)
    assert phonemes and set(phonemes) <= PHONEME_SET
    assert primary_stresses(phonemes) >= 1


def test_blorptastic_sounds_plausible():
    assert word_to_phonemes("blorptastic") == "B L AO0 R P T AE1 S T IH0 K".split()


def test_a_word_without_vowel_sounds_is_spelled():
    g2p = G2P(lexicon={}, fallback=letter_to_sound)
    assert letter_to_sound("bcd") == ["B", "K", "D"]
    assert g2p.word_to_phonemes("bcd") == spell("bcd")
    assert g2p.word_to_phonemes("h") == ["EY1", "CH"]  # the rules make "h" silent


def test_fallback_is_replaceable():
    g2p = G2P(lexicon=LEXICON, fallback=spell)
    assert g2p.word_to_phonemes("ok") == spell("ok")
    assert g2p.word_to_phonemes("john") == ["JH", "AA1", "N"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", max_size=30))
def test_letter_to_sound_never_fails(word):
    phonemes = letter_to_sound(word)
    assert set(phonemes) <= PHONEME_SET
    assert primary_stresses(phonemes) <= 1
    said = G2P().word_to_phonemes(word)
    assert set(said) <= PHONEME_SET
    assert bool(said) == bool(re.search("[a-z]", word))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20))
def test_any_token_gives_only_phonemes(token):
    assert set(word_to_phonemes(token)) <= PHONEME_SET


def test_tokens_without_letters_say_nothing():
    for token in ("", "'", "123", "€", "--"):
        assert word_to_phonemes(token) == []


# --- overrides ----------------------------------------------------------------------------


def test_override_is_taken_as_written():
    assert word_to_phonemes("{HH AH0 L OW1}") == ["HH", "AH0", "L", "OW1"]
    assert word_to_phonemes("{hh  ah0 l ow1}") == ["HH", "AH0", "L", "OW1"]
    assert word_to_phonemes("{}") == []


def test_override_vowels_without_stress_digits():
    assert parse_override("{HH AH L OW}") == ["HH", "AH1", "L", "OW0"]
    assert parse_override("{HH AH L OW1}") == ["HH", "AH0", "L", "OW1"]


def test_override_drops_unknown_symbols_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="tts.text.g2p"):
        assert parse_override("{HH AH0 XX L OW1 7}") == ["HH", "AH0", "L", "OW1"]
    assert "XX 7" in caplog.text
    assert parse_override("{<eos> , ?}") == []
