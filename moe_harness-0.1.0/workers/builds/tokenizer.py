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
