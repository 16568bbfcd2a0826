"""transformers' renames across the supported range, detected once, here and nowhere else.

The KV cache reaches a model's ``forward`` as ``past_key_values`` up to transformers 5.23 and as
``cache`` from 5.24 on (``past_key_values`` still works there, with a FutureWarning, until 5.40).
Which name the installed version wants is read from a model class's ``forward`` signature, not
from the version number, so a backport or a rename of the rename is followed too.

- ``CACHE_KWARG``: the name to pass the cache under (``model(**cache_kwargs(cache), ...)``).
- ``call_cache(forward, args, kwargs)``: the cache a call carries, whichever name or position the
  caller used (a forward pre-hook sees the call as the caller wrote it).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from functools import lru_cache

CACHE_NAMES = ("cache", "past_key_values")  # the new name first


def _forward_cache_name() -> str:
    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    params = inspect.signature(LlamaForCausalLM.forward).parameters
    for name in CACHE_NAMES:
        if name in params:
            return name
    raise RuntimeError("transformers' LlamaForCausalLM.forward takes neither `cache` nor "
                       "`past_key_values`: a rename workers/compat.py does not know yet")


CACHE_KWARG: str = _forward_cache_name()


def cache_kwargs(cache) -> dict:
    """``{CACHE_KWARG: cache}``: the cache under the name the installed transformers wants."""
    return {CACHE_KWARG: cache}


@lru_cache(maxsize=64)
def _positions(forward) -> dict[str, int]:
    """{cache parameter name: its position among the positional arguments after self}."""
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    positional = [p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    return {name: positional.index(name) for name in CACHE_NAMES if name in positional}


def call_cache(forward, args: tuple, kwargs: dict):
    """The KV cache one call to ``forward`` carries (None if it carries none): by either keyword,
    or by position. ``forward`` is the bound or unbound method the call goes to."""
    for name in CACHE_NAMES:
        if kwargs.get(name) is not None:
            return kwargs[name]
    for name, index in _positions(getattr(forward, "__func__", forward)).items():
        if index < len(args) and args[index] is not None:
            return args[index]
    return None


def on_task_configs(task_manager, fix) -> None:
    """Pass every task config ``task_manager`` (lm-eval's ``TaskManager``) builds from a YAML
    through ``fix(config, yaml_path) -> config`` before its Task (and its dataset) is made. lm-eval
    0.4.9+ builds them in ``TaskManager._factory._load_full_config(entry, overrides)``; a version
    without that seam fails here, by name, rather than reading task data from the wrong folder."""
    factory = getattr(task_manager, "_factory", None)
    original = getattr(factory, "_load_full_config", None)
    if original is None:
        raise RuntimeError("lm-eval's TaskManager has no _factory._load_full_config: a change "
                           "workers/compat.py does not know yet (task data paths cannot be resolved)")

    def load(entry, overrides=None):
        config = original(entry, overrides)
        path = getattr(entry, "yaml_path", None)
        return fix(config, Path(path)) if path else config

    factory._load_full_config = load


def rope_parameters(config) -> dict:
    """A transformers config's rope settings as one dict (``rope_theta``, ``rope_type`` and any
    scaling keys): transformers 5 keeps them in ``config.rope_parameters``, 4.x in ``rope_theta``
    beside ``rope_scaling``."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return dict(params)
    out = dict(getattr(config, "rope_scaling", None) or {})
    out.setdefault("rope_type", out.get("type", "default"))
    out["rope_theta"] = float(getattr(config, "rope_theta", 10000.0))
    return out
