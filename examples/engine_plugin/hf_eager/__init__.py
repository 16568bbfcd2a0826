"""``hf_eager``: an example engine plugin for moe-harness (``spec``: torch-free; ``engine``: the worker side)."""
