"""Count a variant's parameters without its weights: what `harness describe` and `harness plan` show.

- A config build is counted by the per-family arithmetic (``harness.derive.count``); a family the
  arithmetic does not know is built on the meta device in a torch subprocess
  (``python -m workers.builds.meta``: shapes, no storage), since ``harness`` never imports torch.
- A local checkpoint is counted from ``config.json`` and its safetensors headers
  (``moe_schema.headers``): the first 8 bytes and the JSON header of each file, no tensor data.
- A hub id fetches only ``config.json`` and the safetensors metadata (``huggingface_hub``'s
  ``get_safetensors_metadata``, which reads the headers by range requests).
- A routing strategy's experts per token replaces the native top-k, as ``workers.jobs.variant_params``
  does on a worker; a dynamic strategy (top-p) has no fixed count before it runs, so the native
  count is shown with ``experts_per_token`` null.

The numbers equal what a worker counts on the loaded model (tests compare them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import derive
from moe_schema import headers
from moe_schema.families import FAMILIES


class CountError(ValueError):
    """A variant that cannot be counted; the message says which file or key."""


def checkpoint_facts(ref: str) -> tuple[dict, dict]:
    """(config.json, tensor table name -> (dtype, shape)) of a local directory or a hub id."""
    path = Path(ref).expanduser()
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise CountError(f"{path}: no config.json")
        try:
            return json.loads(cfg_file.read_text()), headers.checkpoint_tensors(path)
        except (headers.HeaderError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CountError(str(exc)) from None
    return _hub_facts(ref)


def _hub_facts(repo: str) -> tuple[dict, dict]:
    try:
        from huggingface_hub import get_safetensors_metadata, hf_hub_download
    except ImportError:
        raise CountError(f"{repo}: counting a hub checkpoint needs huggingface_hub") from None
    try:
        config = json.loads(Path(hf_hub_download(repo, "config.json")).read_text())
        meta = get_safetensors_metadata(repo)
    except Exception as exc:  # offline, gated, missing: one line naming the repo
        raise CountError(f"{repo}: cannot fetch config.json and safetensors metadata from the hub "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    tensors = {name: (info.dtype, tuple(info.shape))
               for file in meta.files_metadata.values() for name, info in file.tensors.items()}
    return config, tensors


def meta_count(config: dict, experts_per_token: float | None = None, tensors: bool = False) -> dict:
    """``workers.builds.meta`` in a subprocess: the config build counted on the meta device."""
    request = json.dumps({"config": config, "experts_per_token": experts_per_token, "tensors": tensors})
    proc = subprocess.run([sys.executable, "-m", "workers.builds.meta"], input=request, capture_output=True,
                          text=True, timeout=600)
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CountError(f"meta-device count of {config.get('model_type')!r} failed: {tail}") from None
    if "error" in out:
        raise CountError(f"meta-device count of {config.get('model_type')!r}: {out['error']}")
    return out


def routed_k(variant: dict, native_k: int | None, num_experts: int | None) -> tuple[float | None, bool]:
    """(experts per token under the variant's routing, dynamic?). None: the native count."""
    routing = variant.get("routing")
    if routing is None or native_k is None or num_experts is None:
        return None, False
    from moe_schema.routing import config_from_spec  # torch-free

    k = config_from_spec(routing).experts_per_token(int(native_k), int(num_experts))
    return k, k is None


def count_variant(variant: dict) -> dict:
    """``{"params", "build", "config", "tensors"}`` of a variant (``tensors``: None for a config build)."""
    build = variant["build"]
    if "trained" in build:
        raise CountError("a trained build is counted on the build its train job starts from")
    if "config" in build:
        config, tensors = build["config"], None
        try:
            native = derive.count(config)
            count = lambda k: derive.count(config, experts_per_token=k)  # noqa: E731
            config = derive.resolved(config)
        except derive.DeriveError:
            if config.get("model_type") in derive.DEFAULTS or config.get("model_type") not in FAMILIES:
                raise
            native = meta_count(config)["params"]
            count = lambda k: meta_count(config, k)["params"]  # noqa: E731
    else:
        config, tensors = checkpoint_facts(build["checkpoint"])
        native = headers.count_tensors(tensors, config)
        count = lambda k: headers.count_tensors(tensors, config, k)  # noqa: E731
    k, dynamic = routed_k(variant, native["experts_per_token"], native["num_experts"])
    params = dict(native) if k is None else count(k)
    if dynamic:
        params["experts_per_token"] = None
    params["active_measured"] = False
    moe = native["num_experts"] is not None
    info = {
        "family": config.get("model_type"), "moe": moe,
        "checkpoint": build.get("checkpoint"), "source": "config" if "config" in build else "checkpoint",
        "seed": build.get("seed", 0) if "config" in build else None,
        "num_layers": config.get("num_hidden_layers"), "hidden_size": config.get("hidden_size"),
        "vocab_size": config.get("vocab_size"), "tie_word_embeddings": config.get("tie_word_embeddings"),
        "num_experts": native["num_experts"],
        "top_k": None if native["experts_per_token"] is None else int(native["experts_per_token"]),
        "dtype": variant.get("dtype"),
    }
    return {"params": params, "build": info, "config": config, "tensors": tensors}


def weight_bytes(counted: dict, dtype: str) -> int:
    """Bytes of the variant's weights in ``dtype``; ``auto`` keeps a checkpoint's stored dtypes (a config
    build is made in float32)."""
    if dtype in headers.SUITE_DTYPE_BYTES:
        return counted["params"]["total"] * headers.SUITE_DTYPE_BYTES[dtype]
    if counted["tensors"] is None:
        return counted["params"]["total"] * 4
    tensors = headers.model_tensors(counted["tensors"], counted["config"])
    per_param = headers.tensor_bytes(tensors) / max(1, sum(_numel(s) for _, s in tensors.values()))
    return round(counted["params"]["total"] * per_param)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
