"""Build spec → an ordinary Hugging Face checkpoint directory (or a hub id) that from_pretrained loads.

A ``{"config": {...}, "seed": int}`` build is instantiated with its family's transformers class,
seeded (the same build dict gives bit-identical weights), and saved with the byte tokenizer into
``$MOE_HARNESS_HOME/builds/<build hash>``. The folder appears atomically (written to a temporary
sibling, then renamed), so a concurrent worker sees either nothing or a complete checkpoint.

A ``{"checkpoint": ...}`` build names a local directory (returned as is, after checking it holds
``config.json`` and safetensors weights) or a hub id (returned as a string for from_pretrained).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from workers.builds.spec import bad, build_hash, check_build
from workers.builds.tokenizer import BOS_ID, BYTE_VOCAB_SIZE, EOS_ID, PAD_ID, save_byte_tokenizer
from workers.errors import ModelLoadFailed
from moe_schema.families import FAMILIES
from moe_schema.home import harness_home

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def build_dir(build: dict, home: str | Path | None = None) -> Path:
    """Where a config build is (or will be) materialised."""
    return harness_home(home) / "builds" / build_hash(build)


def materialize(build: dict, home: str | Path | None = None) -> Path | str:
    """Return what from_pretrained should load for ``build``: a checkpoint directory or a hub id."""
    check_build(build)
    if "checkpoint" in build:
        return resolve_checkpoint(build["checkpoint"])
    if "trained" in build:
        return resolve_trained(build["trained"], home)
    final = build_dir(build, home)
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(final.parent)
    tmp = final.parent / f".tmp-{final.name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model = instantiate(build)
        model.save_pretrained(tmp)  # transformers 5 writes safetensors only
        save_byte_tokenizer(tmp)
        (tmp / "build.json").write_text(json.dumps(build, indent=1, sort_keys=True) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def sweep_abandoned(builds: Path) -> None:
    """Remove temporary build folders left by processes of this host that died while writing."""
    host = socket.gethostname()
    for tmp in builds.glob(".tmp-*"):
        parts = tmp.name.rsplit("-", 2)  # .tmp-<hash>-<host>, <pid>, <random>
        if len(parts) != 3 or not parts[0].endswith(f"-{host}") or not parts[1].isdigit():
            continue
        pid = parts[1]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # alive, or not ours to signal


def instantiate(build: dict):
    """The family's transformers model for a config build, weights drawn from ``build["seed"]``."""
    import torch
    import transformers

    config = dict(build["config"])
    family = FAMILIES[config.pop("model_type")]
    config.setdefault("vocab_size", BYTE_VOCAB_SIZE)
    if config["vocab_size"] < BYTE_VOCAB_SIZE:
        raise bad("variant.build.config.vocab_size",
                  f"{config['vocab_size']} is smaller than the byte tokenizer's {BYTE_VOCAB_SIZE} tokens")
    config.update(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    try:
        hf_config = transformers.AutoConfig.for_model(family.model_type, **config)
        cls = getattr(transformers, family.causal_lm_class)
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
            torch.manual_seed(build.get("seed", 0))
            model = cls(hf_config)
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise bad("variant.build.config", f"{family.model_type} cannot be built: {first}") from None
    return model.eval()


def resolve_checkpoint(checkpoint: str) -> Path | str:
    """A local checkpoint directory (checked) or a hub id (returned as is)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        check_checkpoint_dir(path)
        return path.resolve()
    looks_local = checkpoint.startswith(("/", ".", "~")) or checkpoint.count("/") > 1
    if looks_local or path.exists():
        raise ModelLoadFailed(f"checkpoint {checkpoint!r}: no such directory")
    if not _HUB_ID.match(checkpoint):
        raise ModelLoadFailed(f"checkpoint {checkpoint!r}: neither a local directory nor a hub id like 'org/name'")
    return checkpoint


def resolve_trained(key: str, home: str | Path | None = None) -> Path:
    """The checkpoint a train job left on this machine under ``key``."""
    from moe_schema.train import trained_path  # torch-free

    path = trained_path(key, home)
    if not (path / "config.json").is_file():
        raise ModelLoadFailed(f"trained checkpoint {key}: not on this worker ({socket.gethostname()}, {path}); "
                              f"only the worker that ran its train job holds it")
    check_checkpoint_dir(path)
    return path


def check_checkpoint_dir(path: Path) -> None:
    """A loadable checkpoint dir holds config.json and safetensors weights; pickle weights are refused."""
    if not (path / "config.json").is_file():
        raise ModelLoadFailed(f"checkpoint {str(path)!r}: no config.json in the directory")
    names = [p.name for p in path.iterdir() if p.is_file()]
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelLoadFailed(
            f"checkpoint {str(path)!r}: only pickle weights ({', '.join(pickles)}); moe-harness loads safetensors "
            "only (convert with `model.save_pretrained(dir)` in a trusted environment)")
    raise ModelLoadFailed(f"checkpoint {str(path)!r}: no *.safetensors weights in the directory")
