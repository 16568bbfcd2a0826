"""The bios corpus's arithmetic and vocabulary (moe_schema.bios) and the tokenizers of config builds
(workers.builds.tokenizer). The corpus a build trains on is named by its spec only, so its word lists
must not move under the same name: they are pinned here by content hash. The word tokenizer gives
one token per word at fixed ids, the byte tokenizer one per byte, and both give back the text."""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer  # at collection: its first import takes longer than a mutant's test may

from moe_schema import bios
from moe_schema.hashing import content_hash
from moe_schema.tokens import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID
from workers.builds import tokenizer as tk

LISTS = (bios.FIRST, bios.MIDDLE, bios.LAST, bios.CITIES, bios.UNIVERSITIES, bios.MAJORS, bios.EMPLOYERS)


# ---------------------------------------------------------------- the corpus's name and value spaces

def test_the_word_lists_and_templates_are_what_trained_builds_were_trained_on():
    """Another syllable, stride or template would make another corpus under the same corpus key."""
    assert bios.FIRST[:3] == ("Baban", "Braestoura", "Doloul")
    assert (bios.MIDDLE[1], bios.LAST[1], bios.CITIES[1]) == ("Braestone", "Brafuwell", "Boutraeport")
    assert (bios.UNIVERSITIES[1], bios.MAJORS[1], bios.EMPLOYERS[1]) == ("Brikofield", "Brilenomy", "Bouvaetech")
    assert content_hash(LISTS) == "e574414a81cc56c7"
    assert content_hash(bios.ATTRIBUTES) == "52142a87df45cbab"
    assert content_hash(bios.vocabulary()) == "0a0e623edf30a12a"
    assert bios.EMPLOYER_CITY[:5] == (13, 132, 51, 170, 89)
    assert all(0 <= c < len(bios.CITIES) for c in bios.EMPLOYER_CITY) and len(bios.EMPLOYER_CITY) == 263


def test_the_lists_are_drawn_the_same_way_each_time():
    """The lists are made when the module is imported; made again now they are the same words, and the
    employers' cities the same draw (a change to the drawing would otherwise hide behind the import)."""
    assert bios._words(400, ("n", "l", "ra"), 7919) == bios.FIRST
    assert bios._words(1000, ("son", "well", "ford", "wick", "more"), 7901) == bios.LAST
    assert bios._words(263, ("corp", "tech", "works", "labs"), 6037) == bios.EMPLOYERS
    assert bios._words(3, ("a",), 1) == ("Babaa", "Babea", "Babia")
    assert bios._employer_cities() == bios.EMPLOYER_CITY


def test_every_list_has_its_size_of_distinct_capitalised_words():
    assert [len(x) for x in LISTS] == [400, 400, 1000, 200, 300, 100, 263]
    for words in LISTS:
        assert len(set(words)) == len(words) and all(w[0].isupper() and w[1:].islower() for w in words)
    assert bios.DAYS[0] == "1" and bios.DAYS[-1] == "28" and len(bios.DAYS) == 28
    assert bios.YEARS[0] == "1900" and bios.YEARS[-1] == "2099" and len(bios.MONTHS) == 12


def test_a_stride_not_prime_to_the_stems_is_refused():
    """24 onsets x 8 vowels squared x 2 suffixes = 73,728 words; a stride sharing a factor repeats them."""
    assert len(bios._words(5, ("a", "b"), 7919)) == 5
    with pytest.raises(AssertionError, match=r"^stride must be prime to the number of stems x suffixes$"):
        bios._words(2, ("a", "b"), 73728)


def test_bits_per_person_names_aside():
    """log2(12 x 28 x 200) + log2 200 + log2 300 + log2 100 + log2 263 = 46.592; the employer's city is fixed
    by the employer (one value, 0 bits); 400 x 400 x 1000 names."""
    assert bios.value_counts() == {"birth_date": 67200, "birth_city": 200, "university": 300, "major": 100,
                                   "employer": 263, "employer_city": 1}
    assert bios.value_bits()["employer_city"] == 0.0 and bios.value_bits()["major"] == pytest.approx(math.log2(100))
    assert bios.bits_per_person() == pytest.approx(46.591623671891114, rel=1e-12)
    assert bios.NAME_SPACE == 160_000_000


def test_the_vocabulary_template_words_first_then_values_then_names_each_once():
    """Template words in first-seen order without their fields, then months, days, years, values and
    name parts; 2,952 words plus pad, bos, eos and unk."""
    t = bios.template_words()
    assert t[:12] == ["was", "born", "on", ",", ".", "came", "into", "this", "world", "The", "birthday", "of"]
    assert not any(w.startswith("{") or w.endswith("}") for w in t) and len(t) == len(set(t))
    v = bios.vocabulary()
    assert v[:len(t)] == t and v[len(t):len(t) + 12] == list(bios.MONTHS) and v[len(t) + 12] == "1"
    assert len(v) == len(set(v)) == 2952 and v[-1] == bios.LAST[-1]
    assert bios.word_vocab_size() == 2956


def test_what_harness_plan_prints_about_a_bios_corpus():
    lines = bios.plan_lines({"entities": 1000})
    assert lines == [
        "bios corpus: 1,000 persons, names from 400 x 400 x 1000 = 160,000,000 (N0)",
        "  bits per person, names aside: log2 67,200 (16.036) + log2 200 (7.644) + log2 300 (8.229) + log2 100 (6.644) "
        "+ log2 263 (8.039) = 46.592 (employer city: 0, fixed by the employer; the paper's ~47.6 also counts a 1-bit "
        "gender this profile does not have)",
        "  facts: 1,000 x 46.592 = 46,592 bits; tokenizer byte (vocabulary 2,956 words with tokenizer: word)"]
    assert bios.plan_lines({"entities": 5, "tokenizer": "word"})[2] == (
        "  facts: 5 x 46.592 = 233 bits; tokenizer word (vocabulary 2,956 words with tokenizer: word)")


# ---------------------------------------------------------------- the word tokenizer

def test_word_ids_skip_the_byte_tokenizers_special_ids_and_unk_comes_last():
    """Words at 0.., jumping over 256-258 so pad/bos/eos keep their ids whichever tokenizer a build
    trains with; unk after everything."""
    words = [f"w{i}" for i in range(300)]
    vocab = tk.word_vocab(words)
    assert vocab["w0"] == 0 and vocab["w255"] == 255 and vocab["w256"] == 259 and vocab["w299"] == 302
    assert (vocab[PAD], vocab[BOS], vocab[EOS]) == (PAD_ID, BOS_ID, EOS_ID) == (256, 257, 258)
    assert vocab[bios.UNK] == 303 == len(words) + 3 and len(vocab) == 304
    real = tk.word_vocab(bios.vocabulary())
    assert real[bios.UNK] == bios.word_vocab_size() - 1 == max(real.values()) and len(real) == bios.word_vocab_size()
    assert sorted(real.values()) == list(range(bios.word_vocab_size()))  # no id unused, none twice


def test_one_token_per_word_and_the_text_comes_back():
    """Known words are their ids, an unknown word is unk, specials are single tokens; decoding joins with
    single spaces."""
    words = bios.vocabulary()
    ids = tk.word_vocab(words)
    tok = tk.build_word_tokenizer(words)
    enc = tok.encode("Baban was  born in Nowhere .")
    assert enc.ids == [ids["Baban"], ids["was"], ids["born"], ids["in"], 2955, ids["."]]
    assert tok.decode(enc.ids) == "Baban was born in ."  # specials (unk included) are skipped
    assert tok.decode([ids["Baban"], ids["was"]]) == "Baban was"
    assert [tok.token_to_id(s) for s in (PAD, BOS, EOS, bios.UNK)] == [256, 257, 258, 2955]
    assert tok.encode(f"{BOS} Baban").ids == [257, ids["Baban"]]
    assert tok.get_vocab_size() == bios.word_vocab_size()


def test_the_saved_word_tokenizer_loads_in_transformers_with_its_specials(tmp_path):
    words = bios.vocabulary()
    ids = tk.word_vocab(words)
    out = tk.save_word_tokenizer(tmp_path / "w", words)
    assert out == tmp_path / "w"
    hf = AutoTokenizer.from_pretrained(out)
    assert hf("Baban was xyz", add_special_tokens=False)["input_ids"] == [ids["Baban"], ids["was"], 2955]
    assert (hf.pad_token, hf.bos_token, hf.eos_token, hf.unk_token) == (PAD, BOS, EOS, bios.UNK)
    assert hf.decode([ids["Baban"], ids["was"], ids["."]]) == "Baban was ."


# ---------------------------------------------------------------- the byte tokenizer

def test_one_token_per_byte_and_the_exact_text_back():
    """Every UTF-8 byte is its own id (0..255), no prefix space, no regex split; specials at 256-258."""
    tok = tk.build_byte_tokenizer()
    text = "a b\n\té€\x00"
    ids = tok.encode(text).ids
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.encode(f"x{EOS}").ids == [120, 258]
    assert tok.get_vocab_size() == 259


def test_the_byte_table_is_gpt2s():
    chars = tk._byte_to_char()
    assert chars[ord("a")] == "a" and chars[ord(" ")] == "Ġ" and chars[0] == "Ā" and chars[255] == "ÿ"
    assert len(set(chars)) == 256


def test_the_tokenizers_are_saved_into_a_new_nested_folder_and_saved_again_over_themselves(tmp_path):
    for save in (tk.save_byte_tokenizer, lambda d: tk.save_word_tokenizer(d, ["a", "b"])):
        folder = tmp_path / save.__name__ / "build" / "tokenizer"
        assert save(folder) == folder and (folder / "tokenizer.json").is_file()
        (folder / "tokenizer.json").write_text("{}")
        assert save(folder) == folder and (folder / "tokenizer.json").stat().st_size > 2  # written again


def test_the_saved_tokenizers_ask_every_transformers_version_not_to_clean_up_spaces(tmp_path):
    """transformers 5 ignores the clean-up for a BPE tokenizer; older ones (tox -e oldest) apply it
    when the file asks, and "hi ." would decode as "hi."."""
    import json

    for folder in (tk.save_byte_tokenizer(tmp_path / "b"), tk.save_word_tokenizer(tmp_path / "w", ["a"])):
        assert json.loads((folder / "tokenizer_config.json").read_text())["clean_up_tokenization_spaces"] is False


def test_the_saved_byte_tokenizer_keeps_spaces_and_specials(tmp_path):
    out = tk.save_byte_tokenizer(tmp_path / "b")
    hf = AutoTokenizer.from_pretrained(out)
    assert hf("hi .", add_special_tokens=False)["input_ids"] == [104, 105, 32, 46]
    assert hf.decode([104, 105, 32, 46]) == "hi ."
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (256, 257, 258)
