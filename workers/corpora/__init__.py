"""Training corpora: local text/jsonl files or the built-in synthetic knowledge corpus, byte-tokenized.

- ``spec``       the corpus spec dicts a ``train`` job carries, checked, and their cache key
- ``knowledge``  the synthetic knowledge corpus: entities, Zipf-distributed bios, pre-tokenized
- ``files``      local text or jsonl files
- ``tasks``      lm-eval tasks (one per popularity bucket, in a group) asking for each entity's facts
- ``capacity``   the regime (tokens and exposures per fact) and knowledge stored in bits
- ``load``       ``prepare(spec, home) -> Corpus``: build or reuse the cached tokens

Torch-free: numpy for sampling, files on disk under ``$MOE_HARNESS_HOME/corpora/<hash>``.
"""
