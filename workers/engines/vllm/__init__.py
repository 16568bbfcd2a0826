"""The ``vllm`` engine: vLLM's own ``LLM`` in the worker's process (its CPU build).

- ``engine``   ``VllmEngine``: refusals, load (KV cache sized), route, the LM and probe steps
- ``routing``  strategies installed as each fused-MoE router's custom routing function; ``VllmRoutingSession``
- ``lm``       ``VllmLM``: lm-eval's requests as vLLM ``generate`` calls on token ids
- ``steps``    ``VllmProbeContext``: prefill and decode timed around ``generate``
- ``install``  the one install command, and the check that names what breaks ``import vllm``

Nothing here imports vLLM at module level but ``routing``, ``lm`` and ``steps``' torch; vLLM is
imported when a build is loaded.
"""
