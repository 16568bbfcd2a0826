"""Byte units, the one table: what a size written by a person (``--memory-limit 2GB``, a suite's
``kv_cache_bytes: 1GiB``) or by torch (``tried to allocate 3.5 GiB``) means in bytes. Keys are
lower case; decimal units are powers of 10, binary ones (``KiB`` ...) powers of 2."""

from __future__ import annotations

BYTE_UNITS = {"b": 1, "bytes": 1,
              "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
