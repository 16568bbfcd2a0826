"""Resume state of an unfinished train job: written every N steps, atomically, without pickle.

``<resume dir>/step-<n>/``: ``model.safetensors`` (weights), ``optimizer.safetensors`` (AdamW's
``exp_avg``, ``exp_avg_sq`` and ``step`` per parameter, by parameter index), ``rng.safetensors``
(torch's CPU and CUDA generator states as uint8 tensors), ``routing.safetensors`` (the routing
strategy's learned state, e.g. aux_free's bias, where it has one) and ``state.json`` (step, loss
curve, tokens, elapsed time, learning rate). The folder is written under a temporary name and renamed;
``latest.json`` is then replaced atomically to point at it, and older steps are removed. The data
position is the step itself (``workers.training.data``), so nothing else is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model


def save(directory: Path, step: int, model, optimizer, state: dict, strategy=None) -> Path:
    """Write the resume state for ``step`` (``strategy``: the routing strategy trained with, or None)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    tmp = directory / f".tmp-{step}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tensors = {}
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"{i}.{key}"] = value.detach().contiguous().cpu()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    routing = strategy.state() if strategy is not None else {}
    if routing:
        save_file({k: v.detach().contiguous().cpu() for k, v in routing.items()}, str(tmp / "routing.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    pointer = directory / f".latest-{uuid.uuid4().hex[:8]}"
    pointer.write_text(json.dumps({"step": step, "dir": final.name}) + "\n")
    os.replace(pointer, directory / "latest.json")
    for old in directory.iterdir():
        if old != final and old.name.startswith(("step-", ".tmp-")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(directory: Path) -> Path | None:
    """The newest complete resume state in ``directory``, or None."""
    try:
        pointer = json.loads((directory / "latest.json").read_text())
    except (OSError, ValueError):
        return None
    path = directory / pointer["dir"]
    return path if (path / "state.json").is_file() else None


def load(path: Path, model, optimizer, strategy=None) -> dict:
    """Restore weights, optimizer moments, RNG and the routing strategy's state from ``path``;
    return its ``state.json``."""
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=True)
    device = next(model.parameters()).device
    params = [p for g in optimizer.param_groups for p in g["params"]]
    by_param: dict[int, dict] = {}
    for name, value in load_file(str(path / "optimizer.safetensors")).items():
        i, key = name.split(".", 1)
        by_param.setdefault(int(i), {})[key] = value if key == "step" else value.to(device)
    for i, entries in by_param.items():
        optimizer.state[params[i]] = entries
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if strategy is not None and (path / "routing.safetensors").is_file():
        strategy.load_state(load_file(str(path / "routing.safetensors")))
    return json.loads((path / "state.json").read_text())
