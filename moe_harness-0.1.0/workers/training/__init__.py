"""The ``train`` job: train a config build on a corpus for a token budget, save a checkpoint.
(The train job's fields, checked, and where its checkpoint goes: ``moe_schema.train``.)

- ``schedule``    warm-up then cosine learning rate
- ``data``        the batch for step ``s``: a pure function of (corpus, seed, step), same for every build
- ``losses``      cross-entropy, load-balancing loss and router z-loss from hooks on the routers
- ``checkpoint``  resume state: safetensors for tensors, JSON for the rest, written atomically
- ``job``         ``run(job, host, progress, cancelled)``: the loop a reader can hold in their head
"""
