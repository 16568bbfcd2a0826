"""Count a config build on the meta device: the family's own transformers class, no memory allocated.

For families ``harness/derive.py`` has no arithmetic for, and to check that arithmetic: the model
is instantiated under ``torch.device("meta")`` (shapes only, no storage) and counted with
``count_params``, exactly as a loaded model would be. ``harness`` never imports torch, so it runs
this as a subprocess::

    echo '{"config": {...}, "experts_per_token": null}' | python -m workers.builds.meta
    → {"params": {...}, "tensors": {name: [dtype, shape]}}   (tensors only with "tensors": true)
"""

from __future__ import annotations

import json
import sys


def meta_model(config: dict):
    """The config build's model on the meta device (the byte tokenizer's vocabulary unless given)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workers.builds.tokenizer import BYTE_VOCAB_SIZE

    cfg = {"vocab_size": BYTE_VOCAB_SIZE, **config}
    hf_config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def count(config: dict, experts_per_token: float | None = None, tensors: bool = False) -> dict:
    from workers.builds.params import count_params

    model = meta_model(config)
    out = {"params": count_params(model, experts_per_token)}
    if tensors:
        unique = {}
        for name, p in model.named_parameters():  # tied weights once, as a checkpoint stores them
            unique.setdefault(id(p), (name, p))
        out["tensors"] = {name: [str(p.dtype).removeprefix("torch."), list(p.shape)] for name, p in unique.values()}
    return out


def main() -> int:
    request = json.load(sys.stdin)
    try:
        out = count(request["config"], request.get("experts_per_token"), bool(request.get("tensors")))
    except Exception as exc:  # one line for the harness to show
        print(json.dumps({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
