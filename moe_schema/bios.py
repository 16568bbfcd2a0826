"""The ``bios`` corpus profile: Allen-Zhu & Li's bioS (arXiv 2404.05405, "Physics of Language Models
3.3"), its attribute value counts and name space, and the word vocabulary its tokenizer is built from.

Shared (torch-free) because the harness needs the arithmetic without generating anything: the plan
prints bits per person, the suite sets a word-tokenized build's ``vocab_size``; the worker's generator
(``workers.corpora.bios``) and word tokenizer (``workers.builds.tokenizer``) draw from the same lists.

A person: a unique (first, middle, last) name from 400 x 400 x 1000 name parts, and
- birth date: month (12) x day (1-28) x year (200 years): 67,200 values, three value words;
- birth city (200), university (300), major (100), employer (263): one value word each;
- employer city: fixed by the employer (a city drawn once per employer), so it carries 0 bits.
Every value, name part and template word is one word of the vocabulary (one token with
``tokenizer: word``). Names and values are made-up words built from syllables, deterministic.

Bits per person, names aside (``value_bits``): log2(12*28*200) + log2 200 + log2 300 + log2 100 +
log2 263 = 16.036 + 7.644 + 8.229 + 6.644 + 8.039 = 46.59 bits. The paper quotes ~47.6: its bioS
also states a gender (two pronouns, 1 bit); this profile names the person in every sentence and has
no gender, so 46.59 is what its facts hold.
"""

from __future__ import annotations

import itertools
import math

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
DAYS = tuple(str(d) for d in range(1, 29))
YEARS = tuple(str(y) for y in range(1900, 2100))

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "r", "s", "st",
           "t", "tr", "v", "w", "z", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou")


def _words(count: int, suffixes: tuple[str, ...], stride: int) -> tuple[str, ...]:
    """``count`` distinct capitalised made-up words ``onset+vowel+onset+vowel+suffix``, in a spread order."""
    stems = [a + b + c + d for a, b, c, d in itertools.product(_ONSETS, _VOWELS, _ONSETS, _VOWELS)]
    out, i = [], 0
    n = len(stems) * len(suffixes)
    while len(out) < count:
        j = (i * stride) % n
        out.append((stems[j // len(suffixes)] + suffixes[j % len(suffixes)]).capitalize())
        i += 1
    assert len(set(out)) == count, "stride must be prime to the number of stems x suffixes"
    return tuple(out)


FIRST = _words(400, ("n", "l", "ra"), 7919)
MIDDLE = _words(400, ("s", "th", "ne"), 7907)
LAST = _words(1000, ("son", "well", "ford", "wick", "more"), 7901)
CITIES = _words(200, ("ton", "burg", "ville", "port"), 6007)
UNIVERSITIES = _words(300, ("ard", "mont", "field"), 6011)
MAJORS = _words(100, ("ology", "ics", "nomy"), 6029)
EMPLOYERS = _words(263, ("corp", "tech", "works", "labs"), 6037)

# attribute -> (value words per value part, templates). Templates hold {name} and the attribute's
# value part fields; each sentence of a biography is one template, drawn at random.
ATTRIBUTES: dict[str, dict] = {
    "birth_date": {"parts": {"month": MONTHS, "day": DAYS, "year": YEARS}, "templates": (
        "{name} was born on {month} {day} , {year} .",
        "{name} came into this world on {month} {day} , {year} .",
        "The birthday of {name} is {month} {day} , {year} .",
        "{name} celebrates a birthday on {month} {day} , {year} .")},
    "birth_city": {"parts": {"city": CITIES}, "templates": (
        "{name} was born in {city} .", "{name} spent early years in {city} .",
        "The birthplace of {name} is {city} .", "{name} grew up in {city} .")},
    "university": {"parts": {"university": UNIVERSITIES}, "templates": (
        "{name} studied at {university} University .", "{name} graduated from {university} University .",
        "The alma mater of {name} is {university} University .", "{name} was educated at {university} University .")},
    "major": {"parts": {"major": MAJORS}, "templates": (
        "{name} majored in {major} .", "{name} completed a degree in {major} .",
        "The field of study of {name} was {major} .", "{name} focused on {major} .")},
    "employer": {"parts": {"employer": EMPLOYERS}, "templates": (
        "{name} works for {employer} .", "{name} is employed by {employer} .",
        "The employer of {name} is {employer} .", "{name} has a job at {employer} .")},
    "employer_city": {"parts": {}, "templates": (  # the employer's city: determined, no value of its own
        "{name} works in {employer_city} .", "{name} commutes to an office in {employer_city} .",
        "The workplace of {name} is in {employer_city} .", "{name} is based in {employer_city} .")},
}
ORDER = tuple(ATTRIBUTES)


def _employer_cities() -> tuple[int, ...]:
    """The city of each employer: a fixed pseudo-random draw (a multiplicative hash, no RNG)."""
    return tuple((e * 7919 + 13) % len(CITIES) for e in range(len(EMPLOYERS)))


EMPLOYER_CITY = _employer_cities()


def value_counts() -> dict[str, int]:
    """Size of each attribute's value space (employer city: 1, it is fixed by the employer)."""
    out = {}
    for name, attr in ATTRIBUTES.items():
        out[name] = math.prod(len(v) for v in attr["parts"].values()) if attr["parts"] else 1
    return out


def value_bits() -> dict[str, float]:
    """log2 of each attribute's value space: the bits one person's value of it holds."""
    return {a: math.log2(n) for a, n in value_counts().items()}


NAME_SPACE = len(FIRST) * len(MIDDLE) * len(LAST)  # N0 = 160,000,000


def bits_per_person() -> float:
    return sum(value_bits().values())


def template_words() -> list[str]:
    """Every template word, in first-seen order (fields excluded)."""
    out: dict[str, None] = {}
    for attr in ATTRIBUTES.values():
        for t in attr["templates"]:
            for w in t.split(" "):
                if not (w.startswith("{") and w.endswith("}")):
                    out.setdefault(w, None)
    return list(out)


def vocabulary() -> list[str]:
    """The word vocabulary of a bios corpus, in id order (specials excluded): template words, values,
    then name parts. Every word is distinct: a word in two roles is one entry."""
    words: dict[str, None] = {}
    for group in (template_words(), MONTHS, DAYS, YEARS, CITIES, UNIVERSITIES, MAJORS, EMPLOYERS,
                  FIRST, MIDDLE, LAST):
        for w in group:
            words.setdefault(w, None)
    return list(words)


UNK = "<|unk|>"
# Special token ids are those of the byte tokenizer (moe_schema.tokens: 256, 257, 258), so a build's
# config (pad/bos/eos ids) is the same whichever tokenizer it trains with; the unk token comes last.


def word_vocab_size() -> int:
    """Vocabulary words + the three specials + unk."""
    return len(vocabulary()) + 4


def plan_lines(spec: dict) -> list[str]:
    """What ``harness plan`` prints about a bios corpus: the arithmetic of its facts."""
    vb = value_bits()
    n = spec["entities"]
    terms = " + ".join(f"log2 {value_counts()[a]:,} ({vb[a]:.3f})" for a in ORDER if value_counts()[a] > 1)
    return [f"bios corpus: {n:,} persons, names from {len(FIRST)} x {len(MIDDLE)} x {len(LAST)} = "
            f"{NAME_SPACE:,} (N0)",
            f"  bits per person, names aside: {terms} = {bits_per_person():.3f} (employer city: 0, fixed by "
            f"the employer; the paper's ~47.6 also counts a 1-bit gender this profile does not have)",
            f"  facts: {n:,} x {bits_per_person():.3f} = {n * bits_per_person():,.0f} bits; "
            f"tokenizer {spec.get('tokenizer', 'byte')} (vocabulary {word_vocab_size():,} words with "
            f"tokenizer: word)"]
