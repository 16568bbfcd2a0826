"""tests/engine_llamacpp: the GGUF writer and llama.cpp itself, run by ``tox -e llamacpp`` (or
``pytest tests/engine_llamacpp``) where llama-cpp-python is installed. The default run does not
collect this folder (``norecursedirs`` in pyproject.toml); where ``llama_cpp`` cannot be imported,
every test here is skipped with the reason. Builds go to the session's home (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _missing() -> str | None:
    try:
        import llama_cpp  # noqa: F401
        import gguf  # noqa: F401
    except Exception as exc:  # an ImportError, or an OSError from a libllama that does not load
        return (f"llama-cpp-python/gguf not importable ({type(exc).__name__}: {exc}); "
                f"install the [llamacpp] extra (README, 'The llama.cpp engine')")
    return None


def pytest_collection_modifyitems(config, items):
    why = _missing()
    if why:
        for item in items:
            if HERE in Path(item.path).parents:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def tiny(_isolated_home):
    """``tiny(name, **config)``: the checkpoint of ``gguf_tiny.CONFIGS[name]`` (with ``config`` over
    it), built once by the harness's own builder."""
    from gguf_tiny import build

    return build
