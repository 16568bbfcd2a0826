"""Training corpora: local text/jsonl files or the built-in synthetic knowledge corpus, byte-tokenized.

- ``knowledge``  the synthetic knowledge corpus: entities, Zipf-distributed bios, pre-tokenized
- ``files``      local text or jsonl files
- ``tasks``      lm-eval tasks (one per popularity bucket, in a group) asking for each entity's facts
- ``load``       ``prepare(spec, home) -> Corpus``: build or reuse the cached tokens

The corpus spec (checked, and its cache key) is ``moe_schema.corpus``; the regime and knowledge
in bits, ``moe_schema.capacity``.

Torch-free: numpy for sampling, files on disk under ``$MOE_HARNESS_HOME/corpora/<hash>``.
"""
