"""Builds: a build spec → an ordinary Hugging Face checkpoint → a loaded model, and its parameter counts.

- ``spec``         torch-free checks of variant/build dicts and the build hash
- ``tokenizer``    the byte-level tokenizer of config builds (``BYTE_VOCAB_SIZE``, ``save_byte_tokenizer``)
- ``materialize``  ``materialize(build, home=None)``: config → cached checkpoint dir; checkpoint → checked path or hub id
- ``load``         ``load_model(variant, device)`` → ``(model, tokenizer, path)`` via ``from_pretrained``
- ``params``       ``count_params(model, experts_per_token=None)``: total and active parameters

Importing this package loads nothing heavy; torch and transformers load with the modules that need them.
"""
