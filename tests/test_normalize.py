"""Text normalization: golden readings per category, and properties over arbitrary text."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts.text.normalize import NORMALIZED, NothingToSpeakError, normalize

# The output contract, restated here rather than imported, so the test checks the module.
_WORD = r"[a-z]+(?:'[a-z]+)*"
_OVERRIDE = r"\{[A-Z]+[0-9]?(?: [A-Z]+[0-9]?)*\}"
_TOKEN = rf"(?:{_WORD}|[A-Z]|{_OVERRIDE})[,.?!]?"
CONTRACT = re.compile(rf"{_TOKEN}(?: {_TOKEN})*")

PLAIN = [
    ("Hello, world.", "hello, world."),
    ("The quick brown fox.", "the quick brown fox."),
    ("I think I can.", "I think I can."),
    ("i think so", "I think so"),
    ("Don't stop! Won't you?", "don't stop! won't you?"),
    ("It's five o'clock.", "it's five o'clock."),
    ("A cat sat.", "a cat sat."),
    ("twenty-one", "twenty one"),
    ("a well-known fact", "a well known fact"),
    ("  lots   of\tspace \n here ", "lots of space here"),
]
UNICODE = [
    ("café", "cafe"),
    ("naïve façade", "naive facade"),
    ("Zoë Saldaña", "zoe saldana"),
    ("straße", "strasse"),
    ("Æsop", "aesop"),
    ("ﬁnal", "final"),
    ("“Hi,” she said — quietly.", "hi, she said, quietly."),
    ("it’s", "it's"),
    ("pages 5–7", "pages five to seven"),
    ("I love it 😀!", "I love it!"),
    ("be\u200bfore\x00 after\x07", "before after"),
    ("β-blocker", "beta blocker"),
    ("π r²", "pi r squared"),
    ("Москва", "moskva"),
    ("٣٤٥", "three hundred forty five"),
    ("2½ cups", "two and one half cups"),
]
CARDINALS = [
    ("-5", "minus five"),
    ("It is -5 outside", "it is minus five outside"),
    ("−5", "minus five"),
    ("+5", "plus five"),
    ("0.075", "zero point zero seven five"),
    ("3.14159", "three point one four one five nine"),
    (".5", "point five"),
    ("1,203", "one thousand two hundred three"),
    ("10,000,000", "ten million"),
    ("101", "one hundred one"),
    ("0", "zero"),
    ("007", "zero zero seven"),
    ("Room 101", "room one hundred one"),
    ("I have 1500 apples.", "I have one thousand five hundred apples."),
    ("123456789012345678901", " ".join(
        "one two three four five six seven eight nine zero".split() * 2 + ["one"])),
]
ORDINALS = [
    ("3rd", "third"),
    ("21st", "twenty first"),
    ("2nd place", "second place"),
    ("101st", "one hundred first"),
    ("the 1,000th visitor", "the one thousandth visitor"),
    ("In the 21st century", "in the twenty first century"),
]
YEARS = [
    ("1984", "nineteen eighty four"),
    ("2025", "twenty twenty five"),
    ("2000", "two thousand"),
    ("in 1905", "in nineteen oh five"),
    ("It happened in 1066.", "it happened in ten sixty six."),
    ("2009", "two thousand nine"),
    ("since 2010", "since twenty ten"),
    ("1984 was a good year.", "nineteen eighty four was a good year."),
    ("the 1990s", "the nineteen nineties"),
    ("the '90s", "the nineties"),
    ("in my 20s", "in my twenties"),
    ("1939-1945", "nineteen thirty nine to nineteen forty five"),
    ("1990-95", "nineteen ninety to ninety five"),
]
MONEY = [
    ("$3.5 million", "three point five million dollars"),
    ("$20", "twenty dollars"),
    ("$1.50", "one dollar and fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety nine cents"),
    ("$1.01", "one dollar and one cent"),
    ("$5.00", "five dollars"),
    ("$1,000,000", "one million dollars"),
    ("£20", "twenty pounds"),
    ("£1.50", "one pound and fifty pence"),
    ("€1.50", "one euro and fifty cents"),
    ("20€", "twenty euros"),
    ("¥500", "five hundred yen"),
    ("50¢", "fifty cents"),
    ("$5k", "five thousand dollars"),
    ("$2.5B", "two point five billion dollars"),
    ("€2bn", "two billion euros"),
    ("$10-20", "ten to twenty dollars"),
    ("-$5", "minus five dollars"),
    ("20 EUR", "twenty euros"),
    ("USD 5", "five dollars"),
]
PERCENT = [
    ("12%", "twelve percent"),
    ("3.5%", "three point five percent"),
    ("100%", "one hundred percent"),
    ("-2%", "minus two percent"),
    ("10-20%", "ten to twenty percent"),
    ("5%-10%", "five to ten percent"),
]
TIMES = [
    ("9:30 a.m.", "nine thirty A M."),
    ("at 9:30 a.m. today", "at nine thirty A M today"),
    ("2:00", "two o'clock"),
    ("10:05 pm", "ten oh five P M"),
    ("14:45", "fourteen forty five"),
    ("14:00", "fourteen hundred"),
    ("7:05 AM", "seven oh five A M"),
    ("at 5pm", "at five P M"),
    ("9am", "nine A M"),
    ("11:59:30 pm", "eleven fifty nine and thirty seconds P M"),
]
DATES = [
    ("March 3rd, 2025", "march third, twenty twenty five"),
    ("Dec. 31", "december thirty first"),
    ("July 4, 1976", "july fourth, nineteen seventy six"),
    ("Sept. 11, 2001", "september eleventh, two thousand one"),
    ("12/25/2024", "december twenty fifth, twenty twenty four"),
    ("31/12/1999", "the thirty first of december, nineteen ninety nine"),
    ("2024-03-01", "march first, twenty twenty four"),
    ("25.12.2024", "the twenty fifth of december, twenty twenty four"),
    ("3 March 2025", "the third of march, twenty twenty five"),
    ("on the 1st of May", "on the first of may"),
    ("In May 2010 we moved.", "in may twenty ten we moved."),
    ("on Mon. Jan. 5", "on monday january fifth"),
]
RATIOS_AND_RANGES = [
    ("3:1", "three to one"),
    ("a 16:9 screen", "a sixteen to nine screen"),
    ("10-20", "ten to twenty"),
    ("ages 18-25", "ages eighteen to twenty five"),
    ("won 3-2", "won three to two"),
    ("3/4", "three quarters"),
    ("1/2 cup", "one half cup"),
    ("1 1/2", "one and one half"),
    ("24/7", "twenty four seven"),
]
PHONES = [
    ("555-123-4567", "five five five, one two three, four five six seven"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("+1 555 123 4567", "plus one, five five five, one two three, four five six seven"),
    ("555-1234", "five five five, one two three four"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
]
ROMAN = [
    ("Louis XIV", "louis the fourteenth"),
    ("Chapter IV", "chapter four"),
    ("World War II", "world war two"),
    ("World War I", "world war one"),
    ("Elizabeth II", "elizabeth the second"),
    ("Elizabeth I", "elizabeth the first"),
    ("Henry VIII had six wives.", "henry the eighth had six wives."),
    ("Henry VIII's wives", "henry the eighth's wives"),
    ("Pope John Paul II", "pope john paul the second"),
    ("King Rama IX", "king rama the ninth"),
    ("Queen Margrethe II", "queen margrethe the second"),
    ("the King I met", "the king I met"),
    ("Super Bowl LVII", "super bowl fifty seven"),
    ("Act V, Scene II", "act five, scene two"),
    ("Appendix C", "appendix C"),
    ("I, Claudius", "I, claudius"),
]
ABBREVIATIONS = [
    ("Dr. Smith", "doctor smith"),
    ("Mulholland Dr.", "mulholland drive."),
    ("St. Louis", "saint louis"),
    ("Main St.", "main street."),
    ("Mr. and Mrs. Smith", "mister and missus smith"),
    ("Ms. Jones", "miz jones"),
    ("Prof. Lee", "professor lee"),
    ("Gen. Grant, Capt. Hook, Lt. Dan, Col. Mustard, Sgt. Pepper",
     "general grant, captain hook, lieutenant dan, colonel mustard, sergeant pepper"),
    ("Rev. Green", "reverend green"),
    ("Mt. Everest", "mount everest"),
    ("Ft. Worth", "fort worth"),
    ("123 Elm Ave.", "one hundred twenty three elm avenue."),
    ("Sunset Blvd.", "sunset boulevard."),
    ("Abbey Rd.", "abbey road."),
    ("Martin Luther King Jr. spoke.", "martin luther king junior spoke."),
    ("Acme Inc., Acme Ltd. and Acme Corp.",
     "acme incorporated, acme limited and acme corporation."),
    ("Smith & Co.", "smith and company."),
    ("apples, pears, etc., and more", "apples, pears, et cetera, and more"),
    ("and so on, etc. Then", "and so on, et cetera. then"),
    ("e.g. this", "for example this"),
    ("i.e. never", "that is never"),
    ("Cats vs. dogs", "cats versus dogs"),
    ("approx. 5 kg", "approximately five kilograms"),
    ("No. 5", "number five"),
    ("It is a no.", "it is a no."),
    ("pp. 10-12", "pages ten to twelve"),
    ("Jan. and Feb.", "january and february."),
]
UNITS = [
    ("1 km", "one kilometer"),
    ("5 km", "five kilometers"),
    ("5km", "five kilometers"),
    ("2.5 kg", "two point five kilograms"),
    ("1 lb", "one pound"),
    ("2 lbs", "two pounds"),
    ("12 oz", "twelve ounces"),
    ("60 mph", "sixty miles per hour"),
    ("100 km/h", "one hundred kilometers per hour"),
    ("20°C", "twenty degrees celsius"),
    ("1 °F", "one degree fahrenheit"),
    ("90°", "ninety degrees"),
    ("6 ft", "six feet"),
    ("1 ft", "one foot"),
    ("a 5 in. screen", "a five inches screen"),
    ("5 in the box", "five in the box"),
    ("3h 45min", "three hours forty five minutes"),
    ("30 s", "thirty seconds"),
    ("250 ms", "two hundred fifty milliseconds"),
    ("16 GB", "sixteen gigabytes"),
    ("1 MB", "one megabyte"),
    ("44.1 kHz", "forty four point one kilohertz"),
    ("5 km²", "five square kilometers"),
    ("5-10 km", "five to ten kilometers"),
    ("5 ft. tall", "five feet tall"),
]
ACRONYMS = [
    ("FBI", "F B I"),
    ("NASA", "nasa"),
    ("NATO", "nato"),
    ("UNESCO", "unesco"),
    ("SCUBA", "scuba"),
    ("USB", "U S B"),
    ("HTML", "H T M L"),
    ("U.S.", "U S."),
    ("U.S. policy", "U S policy"),
    ("U.S.A.", "U S A."),
    ("PhD", "P H D"),
    ("Ph.D.", "P H D."),
    ("iPhone", "iphone"),
    ("mRNA", "M R N A"),
    ("AT&T", "A T and T"),
    ("R&D", "R and D"),
    ("CDs", "C dees"),
    ("the FBI's", "the F B eyes"),
    ("NASA's rocket", "nasa's rocket"),
    ("I am NOT going", "I am not going"),
    ("OK", "okay"),
    ("THIS IS A TEST OF SHOUTING", "this is a test of shouting"),
    ("J. R. R. Tolkien", "J R R tolkien"),
    ("Plan B.", "plan B."),
    ("vitamin C", "vitamin C"),
    ("COVID-19", "covid nineteen"),
    ("H2O", "H two O"),
    ("MP3", "M P three"),
    ("Rocky II", "rocky two"),
]
ADDRESSES = [
    ("jane.doe@example.com", "jane dot doe at example dot com"),
    ("user+tag@gmail.com", "user plus tag at gmail dot com"),
    ("bob_smith-2@mail.example.net",
     "bob underscore smith dash two at mail dot example dot net"),
    ("https://www.example.com/docs", "W W W dot example dot com slash docs"),
    ("http://example.com", "example dot com"),
    ("https://github.com/user/repo", "github dot com slash user slash repo"),
    ("example.co.uk", "example dot co dot U K"),
    ("see example.com.", "see example dot com."),
    ("index.html", "index dot H T M L"),
    ("192.168.0.1", "one nine two dot one six eight dot zero dot one"),
    ("Python 3.11.7", "python three point eleven point seven"),
    ("v2.0", "version two point zero"),
]
SYMBOLS = [
    ("salt & pepper", "salt and pepper"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("C++ and C#", "C plus plus and C sharp"),
    ("@john", "at john"),
    ("#5", "number five"),
    ("#hashtag", "hashtag"),
    ("3x faster", "three times faster"),
    ("5 × 3", "five times three"),
    ("2x4", "two by four"),
    ("3 < 5", "three less than five"),
    ("~5 minutes", "about five minutes"),
    ("±3", "plus or minus three"),
    ("10³", "ten cubed"),
    ("coffee w/o sugar", "coffee without sugar"),
]
PUNCTUATION = [
    ("Wait... what?", "wait, what?"),
    ("I wonder...", "I wonder."),
    ("Yes!!! Really?!", "yes! really?"),
    ("(hello) world", "hello, world"),
    ("word; word: word", "word, word, word"),
    ("one - two", "one, two"),
    ('"Quoted," he said.', "quoted, he said."),
    ("... leading dots", "leading dots"),
    ("end,.", "end."),
]
OVERRIDES = [
    ("{HH AH0 L OW1} there", "{HH AH0 L OW1} there"),
    ("say { hh  ah0 l ow1 }!", "say {HH AH0 L OW1}!"),
    ("{T AH0 M EY1 T OW2}, please.", "{T AH0 M EY1 T OW2}, please."),
    ("Dr. {S M IH1 TH}", "doctor {S M IH1 TH}"),
]

GOLDEN = {
    "plain": PLAIN, "unicode": UNICODE, "cardinal": CARDINALS, "ordinal": ORDINALS,
    "year": YEARS, "money": MONEY, "percent": PERCENT, "time": TIMES, "date": DATES,
    "ratio/range": RATIOS_AND_RANGES, "phone": PHONES, "roman": ROMAN,
    "abbreviation": ABBREVIATIONS, "unit": UNITS, "acronym": ACRONYMS, "address": ADDRESSES,
    "symbol": SYMBOLS, "punctuation": PUNCTUATION, "override": OVERRIDES,
}
CASES = [
    pytest.param(text, spoken, id=f"{category}: {text}")
    for category, cases in GOLDEN.items()
    for text, spoken in cases
]


@pytest.mark.parametrize("text, spoken", CASES)
def test_golden(text, spoken):
    assert normalize(text) == spoken


@pytest.mark.parametrize("text, spoken", CASES)
def test_golden_outputs_are_fixed_points(text, spoken):
    assert CONTRACT.fullmatch(spoken)
    assert normalize(spoken) == spoken


def test_contract_pattern_is_exported():
    for _, spoken in PLAIN + ACRONYMS + OVERRIDES:
        assert NORMALIZED.fullmatch(spoken)
    assert not NORMALIZED.fullmatch("hello  world")
    assert not NORMALIZED.fullmatch(", hello")
    assert not NORMALIZED.fullmatch("Hello")


@pytest.mark.parametrize(
    "text", ["", "   ", "...", "!?!", "😀🎉", "\x00\x07\x1b", " — ", '""', "{}", "*_~^|\\", "中文"]
)
def test_nothing_to_speak(text):
    with pytest.raises(NothingToSpeakError, match="nothing to speak"):
        normalize(text)


def test_nothing_to_speak_is_a_value_error():
    assert issubclass(NothingToSpeakError, ValueError)


def test_rejects_non_strings():
    with pytest.raises(TypeError, match="str"):
        normalize(b"hello")


def _check(text: str) -> None:
    try:
        out = normalize(text)
    except NothingToSpeakError:
        return
    assert CONTRACT.fullmatch(out), (text, out)
    assert normalize(out) == out, (text, out)


# Fragments that exercise the rules and the places where they meet.
_FRAGMENTS = [
    "A", "a", "I", "B", "V", "X", "FBI", "NASA", "CDs", "PhD", "mRNA", "Dr", "Dr.", "St.",
    "Mr.", "Inc.", "etc.", "e.g.", "vs", "No.", "pp.", "$", "£", "€", "¢", "%", "°", "°C", "5",
    "1", "0", "12", "1984", "1066", "2000", "1990s", "'90s", "3rd", "2:30", "12:00", "3:1",
    "1.5", ".5", "1,000", "-", "–", "—", "+", "=", "&", "@", "#", "/", "x", "×", " ", " ", " ",
    ".", ",", "!", "?", "...", "…", ";", ":", "(", ")", '"', "'", "’", "in", "km", "m", "s", "k",
    "M", "bn", "am", "p.m.", "U.S.", "J.", "www.", "example", ".com", "jane", "Henry",
    "Chapter", "II", "IV", "March", "May", "Jan.", "the", "at", "dot", "Then", "{HH AH0}",
    "{", "}", "é", "😀", "β", "μ", "Ω", "²", "½", "\n", "\x00", "中",
]
_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.text(max_size=60))
def test_any_unicode(text):
    _check(text)


@_SETTINGS
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=20).map("".join))
def test_rule_soup(text):
    _check(text)


@pytest.mark.parametrize("text", ["1" * 5000, "$" + "9" * 5000, "1" * 5000 + "th", "1" * 5000 + "/" + "2" * 5000,
                                  "-" + "7" * 6000 + ".5"])
def test_numbers_of_thousands_of_digits_are_read_digit_by_digit(text):
    """Past what a cardinal reads sensibly (and past Python's 4300-digit int()), digits are
    read one by one, never an error."""
    words = normalize(text).split()
    assert sum(word in ("one", "two", "seven", "nine") for word in words) >= 5000
