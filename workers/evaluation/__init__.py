"""Evaluation through lm-eval: the ``LM`` over a hosted model (``lm.py``), the evaluate job
(``job.py``), request batching (``batching.py``) and the torch-free shard merge (``merge.py``).

Importing this package pulls in no torch or lm-eval: the harness uses ``merge_shards``.
"""

from workers.evaluation.merge import merge_shards

__all__ = ["merge_shards"]
