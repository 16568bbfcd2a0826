"""The byte tokenizer's ids, which config builds use: ids 0..255 are the bytes themselves, then the
specials. Shared because the parameter arithmetic (a config build's vocabulary) and the knowledge
corpus (documents end in EOS) need them without loading the ``tokenizers`` library that
``workers.builds.tokenizer`` builds the tokenizer with.
"""

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 256, 257, 258
BYTE_VOCAB_SIZE = 256 + len(SPECIALS)
