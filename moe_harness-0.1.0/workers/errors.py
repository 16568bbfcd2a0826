"""Errors a job raises to choose its JSON-RPC error code (see moe_schema.protocol)."""

from __future__ import annotations

from moe_schema import protocol


class JobError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class ModelLoadFailed(JobError):
    def __init__(self, message: str):
        super().__init__(protocol.MODEL_LOAD_FAILED, message)


class Unsupported(JobError):
    def __init__(self, message: str):
        super().__init__(protocol.UNSUPPORTED, message)


class JobCancelled(JobError):
    def __init__(self, message: str = "job cancelled"):
        super().__init__(protocol.JOB_CANCELLED, message)
