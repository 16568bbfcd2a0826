"""The probe job: ``run(job, loaded, progress, cancelled) -> {"probe": {...}}``.

``job["probe"] = {"name": str, "params": {...}}`` (see moe_schema.probes). The result holds the
probe's rows, the device peaks the roofline used, and how the model ran (experts implementation,
compile mode, dtype). The model is put in eval mode and its experts implementation restored after.
"""

from __future__ import annotations

import contextlib

import torch

from moe_schema import protocol
from workers.errors import JobError, Unsupported
from moe_schema.probes import ProbeConfigError, TimedConfig, parse_probe
from moe_schema.roofline import resolve_peaks
from workers.moe_blocks import find_moe_blocks
from workers.probes.shape import shape_of
from workers.probes.steps import ProbeContext, resolve_compile


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@contextlib.contextmanager
def experts_implementation(model, requested: str | None):
    """Use ``requested`` for the model's experts while inside; yields the implementation in use (None: dense)."""
    if not find_moe_blocks(model) or not hasattr(model, "set_experts_implementation"):
        yield None
        return
    before = model.get_experts_implementation()
    if requested is not None:
        from workers.experts import register, unsupported

        register()  # "harness" and "harness_triton" are selectable here too
        why = unsupported(model, requested, next(model.parameters()).device)
        if why is not None:
            raise Unsupported(f"probe option experts_implementation={requested!r}: {why}")
        try:
            model.set_experts_implementation(requested)
        except (ValueError, KeyError) as e:
            raise Unsupported(f"probe option experts_implementation={requested!r}: {e}") from None
    try:
        yield model.config._experts_implementation
    finally:
        if requested is not None:
            model.set_experts_implementation(before)


def _routing_session(loaded):
    for attr in ("routing_session", "routing"):
        session = getattr(loaded, attr, None)
        if session is not None:
            return session
    return None


def probe_bytes(config, shape) -> tuple[int, int, int]:
    """``(bytes, batch, tokens)``: an estimate of what the probe's largest step allocates besides
    the weights: the KV cache of its largest batch at its longest context plus new tokens, the
    activations of a prefill of that many tokens (a few hidden-size and MLP-width buffers per
    token, and the attention scores of one layer) and the last position's logits."""
    batch = max(getattr(config, "batch_sizes", None) or (1,))
    lengths = [*(getattr(config, "prompt_lengths", None) or ()), *(getattr(config, "context_lengths", None) or ()),
               getattr(config, "prompt_length", 0) or 0, getattr(config, "context_length", 0) or 0, 1]
    tokens = max(lengths) + (getattr(config, "new_tokens", 0) or 0)
    elt = shape.bytes_per_param
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * tokens * batch * shape.kv_bytes
    width = max(shape.hidden * 4, (shape.expert_params // max(1, shape.hidden)) * max(1, shape.top_k))
    activations = batch * tokens * (shape.hidden * 6 + width) * elt + batch * shape.heads * tokens * tokens * 4
    return kv + activations + batch * shape.vocab * 4, batch, tokens


def admit(config, shape, device) -> None:
    """A probe whose largest step cannot fit the device's free memory (the cgroup's on a CPU)
    fails at once with OUT_OF_MEMORY, before it allocates: a batch of 10^5 was the daemon's death."""
    from workers.memory import device_memory

    need, batch, tokens = probe_bytes(config, shape)
    free = device_memory(str(device))["free"]
    if need > free:
        raise JobError(protocol.OUT_OF_MEMORY,
                       f"probe {config.name!r}: batch {batch:,} at {tokens:,} tokens needs an estimated {need:,} "
                       f"bytes beside the weights but {device} has {free:,} bytes free; not run (lower "
                       "batch_sizes or the context)")


def run(job: dict, loaded, progress=None, cancelled=None) -> dict:
    spec = job.get("probe")
    if not isinstance(spec, dict) or "name" not in spec:
        raise JobError(protocol.INVALID_PARAMS, f"probe job: 'probe' must be {{name, params}}, got {spec!r}")
    try:
        config = parse_probe(spec["name"], spec.get("params"), where="probe")
    except ProbeConfigError as e:
        raise JobError(protocol.INVALID_PARAMS, str(e)) from None

    session = _routing_session(loaded)
    if getattr(config, "new_tokens", 0) > 0 and getattr(session, "causal", True) is False:
        strategy = getattr(session, "label", None) or getattr(session, "name", None) or "this routing strategy"
        raise Unsupported(f"probe {config.name!r} decodes, but routing {strategy} is not causal (a token's "
                          f"experts depend on later tokens); use a token-choice strategy or new_tokens: 0")

    engine = getattr(loaded, "engine", None)
    if engine is not None and engine.name != "transformers":
        return _run_on_engine(engine, config, loaded, progress, cancelled)
    model = loaded.model
    device = next(model.parameters()).device
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    timed = isinstance(config, TimedConfig)
    compile_mode = resolve_compile(config.compile, device) if timed else "none"
    peaks = _peaks(config, device, dtype) if timed else None

    shape = shape_of(model)
    admit(config, shape, device)
    was_training = model.training
    model.eval()
    torch.manual_seed(config.seed)
    try:
        with experts_implementation(model, config.experts_implementation) as impl:
            ctx = ProbeContext(model, loaded.tokenizer, shape, peaks, compile_mode, config.seed,
                               progress, cancelled)
            rows = config.runner()(config, ctx)
    finally:
        model.train(was_training)

    device_info = {"name": _device_name(device), "type": device.type, "dtype": dtype}
    if peaks is not None:
        device_info.update(peaks.as_dict(), name=_device_name(device))
    return {"probe": {
        "name": config.name, "params": config.to_params(), "rows": rows, "device": device_info,
        "experts_implementation": impl, "compile": ctx.compile, "compile_note": ctx.compile_note,
        "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
    }}


def _peaks(config, device, dtype: str):
    """The device's peak bandwidth and FLOP/s for a timed probe's roofline (the suite's
    ``device_peaks`` or the table's); a device the table lacks is the probe's one-line refusal."""
    try:
        return resolve_peaks(_device_name(device), dtype, config.device_peaks)
    except ValueError as e:
        raise Unsupported(f"probe {config.name!r}: {e}") from None


def _run_on_engine(engine, config, loaded, progress, cancelled) -> dict:
    """A probe on an engine that runs its own forward (vLLM): the same runner and row fields, the
    steps timed through ``engine.probe_context``; ``memory`` reads what the engine allocated."""
    dtype = str(loaded.model.dtype).removeprefix("torch.")
    device = torch.device("cpu")
    timed = isinstance(config, TimedConfig)
    if timed and config.compile not in (None, "none"):
        raise Unsupported(f"probe option compile={config.compile!r}: engine {engine.name} compiles its own "
                          f"steps; use compile: none (or leave it out)")
    if config.experts_implementation is not None:
        raise Unsupported(f"probe option experts_implementation={config.experts_implementation!r}: engine "
                          f"{engine.name} runs its own fused experts")
    peaks = _peaks(config, device, dtype) if timed else None
    ctx = engine.probe_context(loaded, shape=shape_of(loaded.model), peaks=peaks, compile_mode="none",
                               seed=config.seed, progress=progress, cancelled=cancelled)
    rows = config.runner()(config, ctx)
    device_info = {"name": _device_name(device), "type": device.type, "dtype": dtype}
    if peaks is not None:
        device_info.update(peaks.as_dict(), name=_device_name(device))
    return {"probe": {
        "name": config.name, "params": config.to_params(), "rows": rows, "device": device_info,
        "experts_implementation": f"{engine.name} fused MoE", "compile": "none", "compile_note": None,
        "torch_threads": torch.get_num_threads(),
    }}
