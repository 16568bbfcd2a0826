"""Variant → (model, tokenizer, path): materialise the build, then plain ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path

from moe_schema import protocol
from workers.builds.materialize import materialize
from workers.builds.spec import bad, check_variant
from workers.errors import JobError, ModelLoadFailed


def torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def load_model(variant, device: str, home: str | Path | None = None, **options):
    """Load a variant's build (a dict, or a checked ``moe_schema.variant.Variant``: not checked again)
    on ``device`` in eval mode; return ``(model, tokenizer, path)``. ``options``: more
    ``from_pretrained`` keyword arguments (an engine's loading options, e.g. ``attn_implementation``).

    Weights come from safetensors only; remote code runs only if the variant says so. A failure to
    load is a ``ModelLoadFailed`` (out of memory: ``JobError(OUT_OF_MEMORY)``) with a one-line reason.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    variant = check_variant(variant)
    path = materialize(variant["build"], home)
    kwargs = dict(dtype=torch_dtype(variant["dtype"]), use_safetensors=True,
                  trust_remote_code=variant["trust_remote_code"], **options)
    if variant["experts_implementation"] is not None:
        from workers.experts import register

        register()  # the harness's own implementations, "harness" and "harness_triton", beside transformers' ones
        kwargs["experts_implementation"] = variant["experts_implementation"]
    where = f"checkpoint {str(path)!r}"
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        model.to(device)
    except torch.cuda.OutOfMemoryError as exc:
        raise JobError(protocol.OUT_OF_MEMORY, f"{where}: out of memory on {device}: {_first_line(exc)}") from None
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
        if "experts_implementation" in str(exc):
            raise bad("variant.experts_implementation", _first_line(exc)) from None
        raise ModelLoadFailed(f"{where}: cannot load the model: {_first_line(exc)}") from None
    if variant["experts_implementation"] is not None:
        from workers.experts import unsupported

        why = unsupported(model, variant["experts_implementation"], device)
        if why is not None:
            raise bad("variant.experts_implementation", f"{variant['experts_implementation']}: {why}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=variant["trust_remote_code"])
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadFailed(f"{where}: cannot load the tokenizer: {_first_line(exc)}") from None
    model.eval()
    return model, tokenizer, path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def meta_twin(path, dtype: str, trust_remote_code: bool):
    """The build's transformers model on the meta device, in ``dtype`` (shapes, no storage)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
    if dtype != "auto":
        model.to(torch_dtype(dtype))
    return model.eval()
