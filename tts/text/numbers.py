"""Numbers in words, the way an American reader says them.

Every function returns normalized words (lowercase, single spaces, no hyphens or commas),
ready to drop into ``normalize`` output. Spelling itself comes from num2words; this module
only picks the reading (cardinal, ordinal, year, digit by digit) and fixes the style:
American, so no "and" inside numbers ("one hundred one", "two thousand nine"). The names
that numbers come with (currencies, units, months) are tabled here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

# Beyond this many digits nobody reads a number as a quantity ("one quintillion ..."); it is
# an identifier and is read digit by digit, which also keeps num2words inside its range.
MAX_CARDINAL_DIGITS = 15

_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def _style(words: str) -> str:
    """num2words' British style -> ours: "twenty-one" -> "twenty one", drop "and" and commas."""
    words = words.replace("-", " ").replace(",", " ")
    return " ".join(w for w in words.split() if w != "and")


def digits(text: str) -> str:
    """Each digit on its own: "4567" -> "four five six seven"; non-digits are skipped."""
    return " ".join(_style(num2words(int(ch))) for ch in text if ch.isdigit())


def cardinal(n: int) -> str:
    """1203 -> "one thousand two hundred three"; negatives get "minus"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if len(str(n)) > MAX_CARDINAL_DIGITS:
        return digits(str(n))
    return _style(num2words(n))


def ordinal(n: int) -> str:
    """21 -> "twenty first"."""
    if n < 0 or len(str(n)) > MAX_CARDINAL_DIGITS:
        return cardinal(n)
    return _style(num2words(n, to="ordinal"))


def year(n: int) -> str:
    """1984 -> "nineteen eighty four", 1905 -> "nineteen oh five", 2009 -> "two thousand nine"."""
    if not 0 < n < 10_000:
        return cardinal(n)
    return _style(num2words(n, to="year"))


def plural(words: str) -> str:
    """The plural of a spoken number, for decades: "nineteen sixty" -> "nineteen sixties"."""
    head, _, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("x"):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def integer(text: str) -> str:
    """An integer as written, commas allowed: "1,203" -> cardinal; "007" -> digit by digit."""
    text = text.replace(",", "")
    if (len(text) > 1 and text.startswith("0")) or len(text) > MAX_CARDINAL_DIGITS:
        return digits(text)  # (Python refuses int() of more than 4300 digits)
    return cardinal(int(text))


def ordinal_text(text: str) -> str:
    """An ordinal's digits as written, commas allowed: "1,001" -> "one thousand first"."""
    text = text.replace(",", "")
    return digits(text) if len(text) > MAX_CARDINAL_DIGITS else ordinal(int(text))


def decimal(text: str) -> str:
    """A decimal as written: "0.075" -> "zero point zero seven five", ".5" -> "point five"."""
    whole, _, frac = text.partition(".")
    words = integer(whole) if whole else ""
    if frac:
        words = f"{words} point {digits(frac)}".strip()
    return words


def number(text: str) -> str:
    """Any plain number as written: optional sign, thousands commas, decimals."""
    sign = ""
    if text[:1] in "-+":
        sign = "minus " if text[0] == "-" else "plus "
        text = text[1:]
    return sign + decimal(text)


def is_one(text: str) -> bool:
    """Whether a written amount takes the singular ("1 km", "1 dollar"); "1.0" does not."""
    return text.lstrip("+") == "1"


_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def fraction(numerator: int, denominator: int) -> str:
    """3/4 -> "three quarters", 1/2 -> "one half", 5/16 -> "five sixteenths"."""
    singular, plural_name = _FRACTION_NAMES.get(denominator, (None, None))
    if singular is None:
        singular = ordinal(denominator)
        plural_name = plural(singular)
    return f"{cardinal(numerator)} {singular if numerator == 1 else plural_name}"


def roman_to_int(text: str) -> int | None:
    """ "XIV" -> 14; None when ``text`` is not a well-formed Roman numeral."""
    if not text or not _ROMAN.fullmatch(text):
        return None
    values = [_ROMAN_VALUES[ch] for ch in text]
    return sum(-v if v < nxt else v for v, nxt in zip(values, values[1:] + [0]))


# --- money -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Currency:
    unit: str
    units: str
    cent: str | None = None  # the hundredth, when amounts are read with one ("fifty cents")
    cents: str | None = None


DOLLAR = Currency("dollar", "dollars", "cent", "cents")
CURRENCY_SYMBOLS: dict[str, Currency] = {
    "$": DOLLAR,
    "£": Currency("pound", "pounds", "penny", "pence"),
    "€": Currency("euro", "euros", "cent", "cents"),
    "¥": Currency("yen", "yen"),
    "₹": Currency("rupee", "rupees", "paisa", "paise"),
    "¢": Currency("cent", "cents"),
}
CURRENCY_CODES: dict[str, Currency] = {
    "USD": DOLLAR,
    "EUR": CURRENCY_SYMBOLS["€"],
    "GBP": CURRENCY_SYMBOLS["£"],
    "JPY": CURRENCY_SYMBOLS["¥"],
    "INR": CURRENCY_SYMBOLS["₹"],
    "CAD": Currency("canadian dollar", "canadian dollars", "cent", "cents"),
    "AUD": Currency("australian dollar", "australian dollars", "cent", "cents"),
    "CHF": Currency("swiss franc", "swiss francs"),
    "CNY": Currency("yuan", "yuan"),
}
# "$5k", "$3.5M", "€2bn": the multiplier written after an amount.
SCALES = {
    "thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion",
    "k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million",
    "b": "billion", "B": "billion", "bn": "billion", "T": "trillion", "tn": "trillion",
}


def money(
    amount: str, currency: Currency, scale: str | None = None, upper: str | None = None
) -> str:
    """ "1.50" dollars -> "one dollar and fifty cents"; "3.5" + "M" -> "three point five
    million dollars".

    ``upper`` is the far end of a range ("$10-20" -> "ten to twenty dollars"). Amounts with
    more than two decimals, or in a currency without a hundredth, are read as decimals.
    """
    scale_words = f" {SCALES[scale]}" if scale else ""
    if upper is not None:
        return f"{number(amount)} to {number(upper)}{scale_words} {currency.units}"
    whole, _, frac = amount.replace(",", "").partition(".")
    if scale or (frac and (len(frac) > 2 or currency.cent is None)) or len(whole) > MAX_CARDINAL_DIGITS:
        return f"{number(amount)}{scale_words} {currency.units}"
    units = int(whole or "0")
    cents = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if units or not cents:
        parts.append(f"{cardinal(units)} {currency.unit if units == 1 else currency.units}")
    if cents:
        parts.append(f"{cardinal(cents)} {currency.cent if cents == 1 else currency.cents}")
    return " and ".join(parts)


# --- units -----------------------------------------------------------------------------------

# Written unit -> (singular, plural). Case matters: "5 m" is meters, "5M" a scale, "5 G" a letter.
UNITS: dict[str, tuple[str, str]] = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "um": ("micrometer", "micrometers"), "nm": ("nanometer", "nanometers"),
    "mi": ("mile", "miles"), "yd": ("yard", "yards"), "ft": ("foot", "feet"),
    "in": ("inch", "inches"), "m2": ("square meter", "square meters"),
    "km2": ("square kilometer", "square kilometers"),
    "cm2": ("square centimeter", "square centimeters"), "ft2": ("square foot", "square feet"),
    "sq ft": ("square foot", "square feet"), "m3": ("cubic meter", "cubic meters"),
    "cm3": ("cubic centimeter", "cubic centimeters"), "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "ug": ("microgram", "micrograms"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "l": ("liter", "liters"), "L": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "gal": ("gallon", "gallons"), "tsp": ("teaspoon", "teaspoons"),
    "tbsp": ("tablespoon", "tablespoons"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kmh": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"), "°": ("degree", "degrees"),
    "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"), "mins": ("minute", "minutes"), "s": ("second", "seconds"),
    "sec": ("second", "seconds"), "secs": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"), "ns": ("nanosecond", "nanoseconds"),
    "yr": ("year", "years"), "yrs": ("year", "years"), "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "PB": ("petabyte", "petabytes"), "kbps": ("kilobit per second", "kilobits per second"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "V": ("volt", "volts"),
    "mV": ("millivolt", "millivolts"), "kV": ("kilovolt", "kilovolts"), "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"), "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "mAh": ("milliamp hour", "milliamp hours"),
    "ohm": ("ohm", "ohms"), "ohms": ("ohm", "ohms"), "dB": ("decibel", "decibels"),
    "px": ("pixel", "pixels"), "fps": ("frame per second", "frames per second"),
    "rpm": ("revolution per minute", "revolutions per minute"), "cal": ("calorie", "calories"),
    "kcal": ("kilocalorie", "kilocalories"),
}


# --- clock times and dates -------------------------------------------------------------------

MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)


def clock(hour: int, minute: int, second: int | None = None, meridiem: str | None = None) -> str:
    """9:30 + "am" -> "nine thirty A M"; 2:00 -> "two o'clock"; 14:00 -> "fourteen hundred"."""
    words = cardinal(hour)
    if minute == 0:
        if meridiem is None:
            words += " o'clock" if 0 < hour <= 12 else " hundred"
    elif minute < 10:
        words += " oh " + cardinal(minute)
    else:
        words += " " + cardinal(minute)
    if second:
        words += f" and {cardinal(second)} second{'s' if second != 1 else ''}"
    if meridiem:
        words += " " + " ".join(meridiem.upper())
    return words


def short_year(text: str) -> str:
    """A two-digit year: "24" -> "twenty four", "05" -> "oh five"."""
    return "oh " + cardinal(int(text)) if text.startswith("0") else cardinal(int(text))


def date(
    month: int, day: int | None = None, year_text: str | None = None, day_first: bool = False
) -> str:
    """(3, 3, "2025") -> "march third, twenty twenty five"; day_first: "the third of march"."""
    name = MONTHS[month - 1]
    if day is None:
        words = name
    elif day_first:
        words = f"the {ordinal(day)} of {name}"
    else:
        words = f"{name} {ordinal(day)}"
    if year_text:
        said = year(int(year_text)) if len(year_text) == 4 else short_year(year_text)
        words += f", {said}" if day is not None else f" {said}"
    return words
