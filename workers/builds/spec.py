"""The worker's checks of the variant and build dicts it receives (``moe_schema.variant``, raised as
``JobError(INVALID_PARAMS)`` whose one-line message names the field, e.g.
``variant.build.config.hidden_size: expected int, got 'big'``), and the content hash naming a build.

Torch-free.
"""

from __future__ import annotations

from moe_schema import families, protocol
from moe_schema import variant as variant_schema
from moe_schema.check import SchemaError
from moe_schema.hashing import content_hash
from workers.errors import JobError

DTYPES = variant_schema.DTYPES


def bad(where: str, what: str) -> JobError:
    return JobError(protocol.INVALID_PARAMS, f"{where}: {what}")


def build_hash(build: dict) -> str:
    """First 16 hex digits of the sha256 of the build's canonical JSON: the build's folder name."""
    return content_hash(build)


def _job_error(check):
    """``check`` with a ``SchemaError`` turned into the INVALID_PARAMS ``JobError`` a worker answers."""
    def checked(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except SchemaError as exc:
            raise bad(exc.path, exc.message) from None

    checked.__doc__, checked.__name__ = check.__doc__, check.__name__
    return checked


# the checks of moe_schema (the one place they are written), as a worker raises them
check_build = _job_error(variant_schema.check_build)
check_config = _job_error(families.check_config)
check_variant = _job_error(variant_schema.check_variant)
parse_variant = _job_error(variant_schema.parse_variant)
