"""What both sides share, and nothing else: torch-free, imported by the coordinator (harness/) and the
workers (workers/) alike.

- ``protocol``   the wire: JSON-RPC 2.0 over msgpack, error codes, CURVE key file names
- ``registry``   the plugin registry (lazy ``module:object`` entries, did-you-mean)
- ``families``   the model-family table and its config checks
- ``routing``    routing strategy parameters (the ``ROUTING`` registry)
- ``probes``     probe parameters (the ``PROBES`` registry)
- ``train``      the train job's fields, its key, where its checkpoint goes
- ``corpus``     training corpus specs and their cache key
- ``capacity``   the knowledge regime and bits stored
- ``merge``      merging an evaluate job's shards
- ``taskfiles``  local lm-eval task folders: digest, bundle, unpack
- ``check``      SchemaError (path + message), the one did-you-mean, small checks
- ``variant``    the variant spec's checks; ``task``: task fields and eval options
- ``params``     per-family parameter arithmetic; ``devices``: device peaks; ``hashing``: content hashes
- ``knowledge``  the knowledge corpus's vocabulary; ``tokens``: the byte tokenizer's ids
- ``home``       the harness home folder (``$MOE_HARNESS_HOME``)

The rule (tests/test_imports.py): nothing here imports torch, transformers, lm-eval or ``workers``.
"""
