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

    model = loaded.model
    device = next(model.parameters()).device
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    timed = isinstance(config, TimedConfig)
    compile_mode = resolve_compile(config.compile, device) if timed else "none"
    peaks = None
    if timed:
        try:
            peaks = resolve_peaks(_device_name(device), dtype, config.device_peaks)
        except ValueError as e:
            raise Unsupported(f"probe {config.name!r}: {e}") from None

    was_training = model.training
    model.eval()
    torch.manual_seed(config.seed)
    try:
        with experts_implementation(model, config.experts_implementation) as impl:
            ctx = ProbeContext(model, loaded.tokenizer, shape_of(model), peaks, compile_mode, config.seed,
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
