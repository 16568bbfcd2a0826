"""The ``llamacpp`` engine: llama.cpp (``llama-cpp-python``) on CPU, from a GGUF the harness writes.

- ``spec``        the torch-free spec (entry point ``moe_harness.engines``): parameters, refusals
- ``gguf_write``  a build's Hugging Face checkpoint -> GGUF (the ``gguf`` package's writer), and its
                  quantization (llama.cpp's own ``llama_model_quantize``), cached under the harness home
- ``engine``      the worker side: load, routing (``expert_used_count``), the LM, the probe steps
- ``lm``          lm-eval's ``LM`` over llama.cpp's logits
- ``steps``       the probes' timed steps

This ``__init__`` stays torch-free (the spec is read by the coordinator).
"""
