"""Evaluation through lm-eval: the ``LM`` over a hosted model (``lm.py``), the evaluate job
(``job.py``) and request batching (``batching.py``). The torch-free shard merge both sides use
is ``moe_schema.merge``.
"""
