"""The probe job: ``run(job, loaded, progress, cancelled) -> {"probe": {...}}``.

``job["probe"] = {"name": str, "params": {...}}`` (see moe_schema.probes). The steps run on the
context the variant's engine gives (``engine.probe_context``, on every engine alike: the engine
sets the model up for the probe's options and undoes it after). The result holds the probe's rows,
the device peaks the roofline used, and how the model ran (experts implementation, compile mode,
dtype).
"""

from __future__ import annotations

from moe_schema import protocol
from moe_schema.probes import ProbeConfigError, parse_probe
from workers.errors import JobError, Unsupported


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

    engine = getattr(loaded, "engine", None)
    if engine is None:  # a Loaded made by hand (tests): the default engine
        from moe_schema.engines import DEFAULT
        from workers.engines import get

        engine = get(DEFAULT)
    with engine.probe_context(loaded, config, progress=progress, cancelled=cancelled) as ctx:
        rows = config.runner()(config, ctx)
    return {"probe": {"name": config.name, "params": config.to_params(), "rows": rows, **ctx.facts()}}
