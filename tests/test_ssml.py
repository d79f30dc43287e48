"""SSML: each element's effect on the plan, offsets into the original, hostile documents."""

import logging

import pytest

from tts.errors import MAX_RATE, MIN_RATE
from tts.text import G2P, WORD, normalize, phonemize, readings, ssml
from tts.text.g2p import LETTER_NAMES
from tts.text.ssml import (
    BREAK_STRENGTHS,
    MAX_BREAK,
    MAX_DEPTH,
    MAX_SSML_CHARS,
    NAMED_RATES,
    Segment,
    SsmlError,
    is_ssml,
    parse_ssml,
)


def segments(doc):
    return [s for p in doc.paragraphs for s in p]


def speech(doc):
    return [s for s in segments(doc) if not s.is_pause]


def only(text):
    """The one segment of ``<speak>text</speak>``."""
    (segment,) = segments(parse_ssml(f"<speak>{text}</speak>"))
    return segment


def source_of(text, segment):
    return text[segment.source[0] : segment.source[1]]


# --- recognizing SSML ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "<speak>Hi</speak>",
    "  \n<speak version='1.1'>Hi</speak>",
    "<speak/>",
    '<?xml version="1.0" encoding="UTF-8"?>\n<speak>Hi</speak>',
    "\ufeff<speak>Hi</speak>",
    # Any markup is SSML, never words to say; parse_ssml refuses what is not a <speak> document.
    "<speaker>Hi</speaker>",
    "<p>Hi</p>",
    "<!-- c --><speak>Hi</speak>",
    '<!DOCTYPE speak [<!ENTITY a "b">]><speak>&a;</speak>',
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n<lolz>&lol;</lolz>',
    "<?xml-stylesheet href='a.css'?><speak/>",
    "\n\t<_x/>",
    "<été>Hi</été>",
])
def test_is_ssml(text):
    assert is_ssml(text)


@pytest.mark.parametrize("text", ["", "speak", "Say <speak>hi</speak>", "<3 you", "< speak>", "a < b",
                                  "<- back", "<<quoted>>", "<= 5", "Just plain text."])
def test_is_not_ssml(text):
    assert not is_ssml(text)


@pytest.mark.parametrize("text", ["", "  ", "Just plain text.", "Say <speak>hi</speak>", "<3 you"])
def test_text_that_is_not_markup_is_refused_as_not_ssml(text):
    with pytest.raises(SsmlError) as e:
        parse_ssml(text)
    assert str(e.value) == "the text is not SSML: it has no <speak> root element"


# --- text ------------------------------------------------------------------------------------


def test_plain_text_is_one_segment_with_whitespace_collapsed():
    text = "<speak>\n   Hello,\n\t  world.  </speak>"
    doc = parse_ssml(text)
    assert doc.warnings == []
    (segment,) = segments(doc)
    assert segment == Segment("Hello, world.", 1.0, False, segment.source)
    assert source_of(text, segment) == "Hello,\n\t  world."


def test_empty_document_has_no_paragraphs():
    assert parse_ssml("<speak/>").paragraphs == []
    assert parse_ssml("<speak>  <p> </p> </speak>").paragraphs == []


def test_paragraphs_split_the_plan():
    doc = parse_ssml("<speak>Intro. <p>First one.</p><p>Second one.</p> Outro.</speak>")
    assert [[s.text for s in p] for p in doc.paragraphs] == [
        ["Intro."], ["First one."], ["Second one."], ["Outro."]]


def test_sentences_mark_their_boundaries():
    doc = parse_ssml("<speak><p>Before <s>one</s><s>two</s> after</p></speak>")
    assert [(s.text, s.sentence_break_before) for s in segments(doc)] == [
        ("Before", False), ("one", True), ("two", True), ("after", True)]


def test_text_inside_a_sentence_is_not_broken_further():
    doc = parse_ssml("<speak><s>A long one, <sub alias='with'>w/</sub> a sub</s></speak>")
    assert [s.sentence_break_before for s in segments(doc)] == [True, False, False]


# --- break -----------------------------------------------------------------------------------


@pytest.mark.parametrize("time, seconds", [("700ms", 0.7), ("1.5s", 1.5), ("2 s", 2.0),
                                           ("0ms", 0.0), ("250MS", 0.25)])
def test_break_time(time, seconds):
    text = f'<speak>Wait <break time="{time}"/> now</speak>'
    a, pause, b = segments(parse_ssml(text))
    assert (a.text, b.text) == ("Wait", "now")
    assert pause.is_pause and pause.pause == pytest.approx(seconds)
    assert source_of(text, pause) == f'<break time="{time}"/>'


@pytest.mark.parametrize("strength", list(BREAK_STRENGTHS))
def test_break_strength(strength):
    pause = only(f'<break strength="{strength}"/>')
    assert pause.pause == BREAK_STRENGTHS[strength]


def test_break_defaults_and_precedence():
    assert only("<break/>").pause == BREAK_STRENGTHS["medium"] == 0.5
    assert only('<break strength="weak" time="2s"/>').pause == 2.0  # time wins
    assert BREAK_STRENGTHS == {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5,
                               "strong": 0.75, "x-strong": 1.25}


def test_a_very_long_break_is_cut_with_a_warning():
    doc = parse_ssml('<speak><break time="3600s"/></speak>')
    assert segments(doc)[0].pause == MAX_BREAK
    assert len(doc.warnings) == 1 and "3600s" in doc.warnings[0]


def test_text_inside_a_break_is_not_read():
    doc = parse_ssml("<speak>a<break time='1s'>hidden <emphasis>too</emphasis></break>b</speak>")
    assert [(s.text, s.pause) for s in segments(doc)] == [("a", None), ("", 1.0), ("b", None)]


@pytest.mark.parametrize("attrs", ['time="5 parsecs"', 'time="-1s"', 'strength="loud"'])
def test_bad_break_is_an_error_naming_its_position(attrs):
    with pytest.raises(SsmlError, match=r"^SSML line 2, column 3: <break>"):
        parse_ssml(f"<speak>\n  <break {attrs}/></speak>")


# --- prosody rate ----------------------------------------------------------------------------


def test_rate_applies_to_exactly_its_span():
    text = '<speak>Normal <prosody rate="50%">slow words</prosody> normal again</speak>'
    doc = parse_ssml(text)
    assert [(s.text, s.rate) for s in segments(doc)] == [
        ("Normal", 1.0), ("slow words", 0.5), ("normal again", 1.0)]
    assert source_of(text, segments(doc)[1]) == "slow words"
    assert doc.warnings == []


@pytest.mark.parametrize("rate, expected", [
    ("50%", 0.5), ("150%", 1.5), ("+20%", 1.2), ("-10%", 0.9), ("1.25", 1.25),
    *NAMED_RATES.items(),
])
def test_rate_values(rate, expected):
    assert only(f'<prosody rate="{rate}">x</prosody>').rate == pytest.approx(expected)


def test_nested_rates_multiply_and_names_are_absolute():
    doc = parse_ssml('<speak><prosody rate="150%">a <prosody rate="-20%">b '
                     '<prosody rate="slow">c</prosody></prosody></prosody></speak>')
    assert [(s.text, pytest.approx(s.rate)) for s in segments(doc)] == [
        ("a", 1.5), ("b", 1.2), ("c", NAMED_RATES["slow"])]


def test_rates_outside_the_engine_range_are_clamped_with_a_warning():
    doc = parse_ssml('<speak><prosody rate="300%">fast</prosody>'
                     '<prosody rate="50%"><prosody rate="50%">slow</prosody></prosody></speak>')
    assert [s.rate for s in segments(doc)] == [MAX_RATE, MIN_RATE]
    assert len(doc.warnings) == 2
    assert "'300%'" in doc.warnings[0] and "column 8" in doc.warnings[0]


def test_unsupported_prosody_attributes_are_ignored_with_one_warning():
    doc = parse_ssml('<speak><prosody pitch="+2st" volume="loud">x</prosody>'
                     '<prosody pitch="low">y</prosody></speak>')
    assert [s.rate for s in segments(doc)] == [1.0, 1.0]
    assert len(doc.warnings) == 1 and "pitch, volume" in doc.warnings[0]


def test_bad_rate_is_an_error():
    with pytest.raises(SsmlError, match=r"^SSML line 1, column 8: <prosody> rate 'quick'"):
        parse_ssml('<speak><prosody rate="quick">x</prosody></speak>')


# --- say-as ----------------------------------------------------------------------------------


def test_say_as_characters_spells_each_letter():
    text = 'Call <say-as interpret-as="characters">ABC</say-as> now'
    _, letters, _ = segments(parse_ssml(f"<speak>{text}</speak>"))
    assert phonemize(normalize(letters.text)) == [
        *LETTER_NAMES["A"], WORD, *LETTER_NAMES["B"], WORD, *LETTER_NAMES["C"]]
    assert source_of(f"<speak>{text}</speak>", letters) == "ABC"


def test_spelled_a_stays_a_letter_before_a_word():
    # Written "A", a capital before a word would be read as the article "a".
    doc = parse_ssml('<speak><say-as interpret-as="spell-out">a</say-as> is a letter</speak>')
    joined = " ".join(s.text for s in segments(doc))
    g2p = G2P(lexicon={"is": [["IH1", "Z"]], "letter": [["L", "EH1", "T", "ER0"]]})
    assert phonemize(normalize(joined), g2p) == [
        *LETTER_NAMES["A"], WORD, "IH1", "Z", WORD, "AH0", WORD, "L", "EH1", "T", "ER0"]


@pytest.mark.parametrize("interpret, fmt, content, words", [
    ("characters", None, "ABC", "{EY1} B C"),
    ("characters", None, "r2d2", "R two D two"),
    ("spell-out", None, "NASA", "N {EY1} S {EY1}"),
    ("cardinal", None, "1984", "one thousand nine hundred eighty four"),
    ("cardinal", None, "12,345", "twelve thousand three hundred forty five"),
    ("cardinal", None, "-2.5", "minus two point five"),
    ("cardinal", None, ".5", "point five"),
    pytest.param("cardinal", None, "1" * 5000, " ".join(["one"] * 5000),
                 id="cardinal-past-the-digit-limit-of-int"),
    ("ordinal", None, "3", "third"),
    pytest.param("ordinal", None, "2" * 5000, " ".join(["two"] * 5000),
                 id="ordinal-past-the-digit-limit-of-int"),
    ("ordinal", None, "21st", "twenty first"),
    ("digits", None, "1984", "one nine eight four"),
    ("date", None, "2025-03-04", "march fourth, twenty twenty five"),
    ("date", "mdy", "3/4/2025", "march fourth, twenty twenty five"),
    ("date", "dmy", "04.03.2025", "the fourth of march, twenty twenty five"),
    ("date", "ymd", "1999/12/31", "december thirty first, nineteen ninety nine"),
    ("date", "md", "Mar 4", "march fourth"),
    ("date", "my", "12/99", "december ninety nine"),
    ("date", "y", "1905", "nineteen oh five"),
    ("time", None, "3:30pm", "three thirty P M"),
    ("time", None, "3:30 P.M.", "three thirty P M"),
    ("time", None, "15:45", "fifteen forty five"),
    ("time", None, "9am", "nine A M"),
    ("telephone", None, "555-123-4567", "five five five, one two three, four five six seven"),
    ("telephone", None, "5551234567", "five five five, one two three, four five six seven"),
    ("telephone", None, "+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
])
def test_say_as_readings(interpret, fmt, content, words):
    format_attr = f' format="{fmt}"' if fmt else ""
    text = f'<speak>x <say-as interpret-as="{interpret}"{format_attr}>{content}</say-as> y</speak>'
    doc = parse_ssml(text)
    _, said, _ = segments(doc)
    assert said.text == words
    assert normalize(said.text) == words  # the normalizer reads it exactly as written
    assert source_of(text, said) == content
    assert doc.warnings == []


def _say_as(interpret: str, content: str) -> str:
    (said,) = segments(parse_ssml(f'<speak><say-as interpret-as="{interpret}">{content}</say-as></speak>'))
    return said.text


@pytest.mark.parametrize("hour", [0, 1, 9, 12, 13, 23, 24, 25])
@pytest.mark.parametrize("minute", [0, 5, 30, 59])
@pytest.mark.parametrize("meridiem", [None, "am", "pm"])
def test_say_as_time_and_plain_text_read_a_clock_alike(hour, minute, meridiem):
    written = f"{hour}:{minute:02d}" + (f" {meridiem}" if meridiem else "")
    words = readings.read_clock(hour, minute, None, meridiem)
    if words is None:  # no clock shows it: read as written, with a warning
        assert _say_as("time", written) == written
    else:
        assert _say_as("time", written) == words == normalize(f"at {written} then")[3:-5]


@pytest.mark.parametrize("written", ["555-123-4567", "(555) 123-4567", "+1 555 123 4567",
                                     "+44 20 7946 0958", "555-1234", "978-3-16-148410-0"])
def test_say_as_telephone_and_plain_text_read_a_phone_number_alike(written):
    assert _say_as("telephone", written) == readings.read_phone(written) == normalize(written)


def test_say_as_content_it_cannot_read_is_read_as_text_with_a_warning():
    doc = parse_ssml('<speak><say-as interpret-as="date" format="mdy">31/31/2020</say-as></speak>')
    assert segments(doc)[0].text == "31/31/2020"
    assert len(doc.warnings) == 1 and "31/31/2020" in doc.warnings[0]


def test_say_as_needs_a_known_date_format():
    with pytest.raises(SsmlError, match="date format 'qq'"):
        parse_ssml('<speak><say-as interpret-as="date" format="qq">1/2</say-as></speak>')


# --- sub and phoneme -------------------------------------------------------------------------


def test_sub_speaks_its_alias():
    text = '<speak>The <sub alias="World Wide Web">WWW</sub> grew.</speak>'
    doc = parse_ssml(text)
    assert [s.text for s in segments(doc)] == ["The", "World Wide Web", "grew."]
    assert source_of(text, segments(doc)[1]) == "WWW"


def test_sub_without_alias_is_an_error():
    with pytest.raises(SsmlError, match="<sub> needs an alias"):
        parse_ssml("<speak><sub>WWW</sub></speak>")


def test_arpabet_phoneme_becomes_an_override():
    text = '<speak>Say <phoneme alphabet="arpabet" ph="t ah0 m aa1 t ow2">tomato</phoneme>.</speak>'
    doc = parse_ssml(text)
    said = segments(doc)[1]
    assert said.text == "{T AH0 M AA1 T OW2} ."
    assert phonemize(normalize(said.text)) == ["T", "AH0", "M", "AA1", "T", "OW2", "."]
    assert source_of(text, said) == "tomato</phoneme>."


def test_unknown_arpabet_symbol_is_an_error():
    with pytest.raises(SsmlError, match=r"^SSML line 1, column 8: .*not ARPAbet: QQ$"):
        parse_ssml('<speak><phoneme alphabet="arpabet" ph="HH QQ">x</phoneme></speak>')


def test_ipa_is_refused_with_a_warning_and_the_text_read():
    doc = parse_ssml('<speak><phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme></speak>')
    assert segments(doc)[0].text == "tomato"
    assert len(doc.warnings) == 1 and "'ipa' is not supported" in doc.warnings[0]


# --- unsupported elements --------------------------------------------------------------------


def test_unsupported_elements_are_read_as_text_with_one_warning(caplog):
    text = ('<speak>I <emphasis level="strong">really</emphasis> mean it. <mark name="m1"/>'
            '<audio src="x.wav">A bell.</audio> <voice name="x"><emphasis>Yes</emphasis></voice>'
            '<say-as interpret-as="currency">$5</say-as></speak>')
    with caplog.at_level(logging.WARNING, logger="tts.text.ssml"):
        doc = parse_ssml(text)
    assert [s.text for s in segments(doc)] == ["I really mean it. A bell. Yes", "$5"]
    assert source_of(text, segments(doc)[0]).startswith("I <emphasis")
    assert doc.warnings == [('SSML elements not supported, read as plain text: '
                             'emphasis, mark, audio, voice, say-as interpret-as="currency"')]
    assert [r.getMessage() for r in caplog.records] == doc.warnings


# --- offsets into the original ---------------------------------------------------------------


def test_offsets_point_into_the_original_string():
    text = ('<?xml version="1.0"?>\r\n<speak xmlns="http://www.w3.org/2001/10/synthesis">\r\n'
            '  Café 😀 AT&amp;T <!-- note --> rocks.\r\n'
            '  <p><s>Now <prosody rate="slow">slowly, über</prosody></s></p>\n'
            '  <say-as interpret-as="characters"> xyz </say-as><![CDATA[<raw> & text]]>\r'
            '  end</speak>')
    doc = parse_ssml(text)
    assert [(s.text, source_of(text, s)) for s in speech(doc)] == [
        ("Café 😀 AT&T rocks.", "Café 😀 AT&amp;T <!-- note --> rocks."),
        ("Now", "Now"),
        ("slowly, über", "slowly, über"),
        ("X Y Z", "xyz"),
        ("<raw> & text end", "<raw> & text]]>\r  end"),
    ]


def test_every_segment_is_text_the_normalizer_reads():
    doc = parse_ssml(
        '<speak><p>Hi <say-as interpret-as="characters">SSML</say-as>, on '
        '<say-as interpret-as="date">2024-02-29</say-as> at '
        '<say-as interpret-as="time">9:05am</say-as>.<break/></p>'
        '<p><sub alias="doctor">Dr.</sub> <phoneme ph="HH AH0 L OW1">hello</phoneme></p></speak>')
    for segment in speech(doc):
        assert normalize(segment.text)


# --- malformed and hostile documents ---------------------------------------------------------


def one_line_error(text) -> str:
    with pytest.raises(SsmlError) as e:
        parse_ssml(text)
    message = str(e.value)
    assert "\n" not in message and message.startswith("SSML ")
    return message


@pytest.mark.parametrize("text, message", [
    ("<speak>\n<p>\n  <s>hi</p></speak>", "SSML line 3, column 10: mismatched tag"),
    ("<speak>Fish &chips;</speak>", "SSML line 1, column 13: undefined entity"),
    ("<speak>a</speak>b", "SSML line 1, column 17: junk after document element"),
    ("<speak>unclosed", "SSML line 1, column 16: no element found"),
    ("<voice>hi</voice>", "SSML line 1, column 1: the root element must be <speak>, not <voice>"),
    ("<speak><speak>hi</speak></speak>", "SSML line 1, column 8: <speak> inside <speak>"),
])
def test_malformed_ssml_names_line_and_column(text, message):
    assert one_line_error(text) == message


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<speak>&lol9;</speak>"""


@pytest.mark.parametrize("text", [
    BILLION_LAUGHS,
    ('<?xml version="1.0"?>\n<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
     "<speak>&xxe;</speak>"),
    '<!DOCTYPE speak SYSTEM "http://example.com/speak.dtd"><speak>hi</speak>',
])
def test_dtds_and_entities_are_refused(text):
    assert "document type declaration (<!DOCTYPE>) is not allowed" in one_line_error(text)


def test_oversized_input_is_refused_before_parsing(monkeypatch):
    def no_parser(*args, **kwargs):
        raise AssertionError("an oversized document reached the parser")

    monkeypatch.setattr(ssml, "DefusedExpatParser", no_parser)
    text = "<speak>" + "<p>" * (10_000_000 // 3) + "</speak>"  # 10 MB of nesting
    assert f"limit is {MAX_SSML_CHARS:,}" in one_line_error(text)


def test_deep_nesting_is_refused_at_the_depth_limit():
    # Just under the size limit, so only the depth bound stops it: parsing ends at the
    # first element too deep, whose column the message names.
    tag = "<emphasis>"
    depth = (MAX_SSML_CHARS - 20) // len(tag)
    text = "<speak>" + tag * depth + "</speak>"
    column = len("<speak>") + (MAX_DEPTH - 1) * len(tag) + 1
    message = one_line_error(text)
    assert message == f"SSML line 1, column {column}: elements nested more than {MAX_DEPTH} deep"


def test_nesting_up_to_the_limit_is_read():
    text = "<speak>" + "<emphasis>" * (MAX_DEPTH - 1) + "deep" + "</emphasis>" * (MAX_DEPTH - 1) + "</speak>"
    assert [s.text for s in segments(parse_ssml(text))] == ["deep"]


def test_punctuation_after_an_element_joins_its_segment():
    text = '<speak>At <say-as interpret-as="time">9am</say-as>. Then <sub alias="B">b</sub>, c</speak>'
    doc = parse_ssml(text)
    assert [(s.text, source_of(text, s)) for s in segments(doc)] == [
        ("At", "At"), ("nine A M .", "9am</say-as>."), ("Then", "Then"), ("B ,", "b</sub>,"), ("c", "c")]
    assert normalize(segments(doc)[1].text) == "nine A M."


def test_only_pause_marks_move_to_the_segment_before():
    doc = parse_ssml('<speak><sub alias="Ann">A.</sub> $5, <sub alias="Bo">B</sub> "hi"</speak>')
    assert [s.text for s in segments(doc)] == ["Ann", "$5,", "Bo", '"hi"']


def test_pause_marks_do_not_cross_a_pause_or_a_sentence_boundary():
    doc = parse_ssml('<speak><sub alias="Ann">A</sub><break/>, x <s><sub alias="Bo">B</sub></s>. y</speak>')
    assert [s.text for s in segments(doc)] == ["Ann", "", ", x", "Bo", ". y"]


def test_warnings_quote_long_content_briefly():
    doc = parse_ssml(f'<speak><say-as interpret-as="Time">{"x" * 10_000}</say-as></speak>')
    (warning,) = doc.warnings
    assert "<say-as> time cannot read 'xxx" in warning and len(warning) < 120


def test_the_unsupported_warning_stays_short():
    doc = parse_ssml("<speak>" + "".join(f"<x{i}>w</x{i}>" for i in range(25)) + "</speak>")
    assert doc.warnings == ["SSML elements not supported, read as plain text: "
                            + ", ".join(f"x{i}" for i in range(10)) + " and 15 more"]
