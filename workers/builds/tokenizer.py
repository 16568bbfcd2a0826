"""A byte-level tokenizer for builds made from a config: one token per UTF-8 byte, plus specials.

Ids 0..255 are the bytes themselves; the special tokens follow. It is saved as an ordinary
transformers fast tokenizer (``tokenizer.json`` + ``tokenizer_config.json``), so
``AutoTokenizer.from_pretrained(dir)`` and lm-eval's ``hf`` backend load it unchanged.
Encoding adds no special tokens; decoding gives back the exact input string.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel

from moe_schema.tokens import BOS, BOS_ID, BYTE_VOCAB_SIZE, EOS, EOS_ID, PAD, PAD_ID, SPECIALS  # noqa: F401


def _byte_to_char() -> list[str]:
    """The printable stand-in character the ByteLevel pre-tokenizer uses for each byte 0..255."""
    alphabet = set(ByteLevel.alphabet())
    assert len(alphabet) == 256
    # GPT-2's table: printable latin-1 bytes map to themselves, the rest to 256 + n in byte order.
    printable = [b for b in range(256) if chr(b) in alphabet]
    chars, n = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    assert set(chars) == alphabet
    return chars


def build_byte_tokenizer() -> Tokenizer:
    """The raw ``tokenizers`` object: byte tokens at ids 0..255, specials at 256.."""
    vocab = {ch: b for b, ch in enumerate(_byte_to_char())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    # No regex split and no prefix space: every byte of the input becomes exactly one token.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    assert [tok.token_to_id(s) for s in SPECIALS] == [PAD_ID, BOS_ID, EOS_ID]
    return tok


def save_byte_tokenizer(directory: str | Path) -> Path:
    """Write the tokenizer files into ``directory`` (created if missing); return the directory."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=build_byte_tokenizer(),
        pad_token=PAD, bos_token=BOS, eos_token=EOS,
        clean_up_tokenization_spaces=False,  # decode must not touch spaces around punctuation
    )
    hf.save_pretrained(directory)
    return directory


# ---- the word tokenizer of a ``bios`` corpus (``corpus.tokenizer: word``) ---------------------------
def word_vocab(words: list[str]) -> dict[str, int]:
    """Word -> id: the words in order at ids 0.., skipping the byte tokenizer's special ids (256-258, so
    a build's pad/bos/eos ids hold whichever tokenizer it trains with); unk last."""
    from moe_schema.bios import UNK

    ids = [i for i in range(len(words) + len(SPECIALS)) if i not in (PAD_ID, BOS_ID, EOS_ID)][:len(words)]
    vocab = dict(zip(words, ids))
    vocab.update({PAD: PAD_ID, BOS: BOS_ID, EOS: EOS_ID})
    vocab[UNK] = len(vocab)
    return vocab


def build_word_tokenizer(words: list[str]) -> Tokenizer:
    """One token per space-separated word (WordLevel); decoding joins tokens with single spaces, so
    text whose words are separated by single spaces comes back unchanged."""
    from moe_schema.bios import UNK

    tok = Tokenizer(models.WordLevel(vocab=word_vocab(words), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([PAD, BOS, EOS, UNK])
    assert [tok.token_to_id(s) for s in SPECIALS] == [PAD_ID, BOS_ID, EOS_ID]
    return tok


def save_word_tokenizer(directory: str | Path, words: list[str]) -> Path:
    """The word tokenizer as a transformers ``PreTrainedTokenizerFast`` in ``directory``."""
    from transformers import PreTrainedTokenizerFast

    from moe_schema.bios import UNK

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf = PreTrainedTokenizerFast(tokenizer_object=build_word_tokenizer(words), pad_token=PAD, bos_token=BOS,
                                 eos_token=EOS, unk_token=UNK, clean_up_tokenization_spaces=False)
    hf.save_pretrained(directory)
    return directory
