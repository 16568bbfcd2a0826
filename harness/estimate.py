"""What a suite will cost on a device, before anything runs: `harness plan --device h100`.

Per variant (counted without weights, ``harness.count``):

- **weights** = total parameters x bytes per value in the variant's dtype (``auto``: a config build
  is made in float32, a checkpoint keeps its stored dtypes);
- **KV cache** = the largest cache a probe point holds: ``layers * 2 * kv_heads * head_dim * bytes``
  per token, times ``batch * (context + new_tokens)``, in the same dtype;
- **fits** when weights + KV cache <= the device memory x ``devices``; otherwise the table says what
  would fit: bfloat16 where the dtype is wider and that suffices, else the number of devices;
- **decode ms/step** at each probe batch size and context: the roofline of one decode step
  (``moe_schema.roofline.decode_cost``: bytes over bandwidth vs FLOPs over peak, the larger),
  with experts touched under uniform routing; one step gives each sequence one token.

Per job:

- **probe**: every timed pass of every point (1 census + ``warmup`` + ``repeats``; one pass for the
  untimed memory and routing probes), each a prefill of the prompt and ``new_tokens`` decode
  steps, at the roofline: a lower bound (measured/roofline is typically 2-10x on GPUs);
- **evaluate**: ``2 * active parameters * tokens`` FLOPs at ``mfu`` of the peak. The tokens come
  from ``--task-tokens NAME=N``, else, for a local task, the bytes of its data files (the byte
  tokenizer of config builds reads one token per byte; an upper bound for other tokenizers);
  a hub task without a count is left unestimated;
- **train**: ``(6 * active non-embedding parameters + 12 * layers * heads * head_dim * seq_len) *
  tokens`` FLOPs (the training job's own MFU formula) at ``mfu`` of the peak of its autocast dtype;
- **describe**: counting only, nothing on the device.

Cost: estimated seconds x USD per device-hour x ``devices`` / 3600, the price from
``moe_schema.devices.PRICES_USD_PER_HOUR`` replaced by the suite's ``prices:`` and ``--price``
(the report's cost per answer uses the same table).

Torch-free.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs

from harness import derive
from harness.count import count_variant, weight_bytes
from moe_schema import devices
from moe_schema import headers
from moe_schema import roofline
from moe_schema.probes import LatencyConfig, MemoryConfig, RoutingConfig, ThroughputConfig, parse_probe

DATA_SUFFIXES = (".jsonl", ".json", ".txt", ".csv", ".tsv", ".parquet")


@attrs.frozen
class Target:
    """The device a plan is for: a table entry (``--device``) or measured peaks (``--peaks``)."""

    name: str
    bandwidth_gbs: float
    tflops_half: float
    tflops_fp32: float
    memory_bytes: int
    devices: int = 1

    def peaks(self, dtype: str) -> roofline.Peaks:
        tflops = self.tflops_fp32 if dtype == "float32" else self.tflops_half
        return roofline.Peaks(name=self.name, bandwidth_gbs=self.bandwidth_gbs, tflops=tflops, source="plan")

    @classmethod
    def from_device(cls, device: devices.Device, n: int = 1) -> "Target":
        return cls(device.key, device.bandwidth_gbs, device.tflops_half, device.tflops_fp32, device.memory_bytes, n)


def parse_target(device: str | None, peaks: str | None, n: int = 1) -> Target:
    """``--device h100`` or ``--peaks GBS,TFLOPS,MEMORY_GB`` (measured; TFLOPS for every dtype)."""
    if peaks:
        try:
            gbs, tflops, mem = (float(x) for x in peaks.split(","))
        except ValueError:
            raise ValueError(f"--peaks {peaks!r}: expected BANDWIDTH_GBS,TFLOPS,MEMORY_GB, e.g. 3350,989,80") from None
        return Target(device or "measured", gbs, tflops, tflops, int(mem * 1e9), n)
    entry = devices.by_key(device or "")
    if entry is None:
        raise ValueError(f"--device {device!r}: unknown device; known: {', '.join(sorted(devices.BY_KEY))} "
                         f"(or give --peaks BANDWIDTH_GBS,TFLOPS,MEMORY_GB)")
    return Target.from_device(entry, n)


def price(target: Target, device: str | None, prices: dict[str, float]) -> tuple[str | None, float | None]:
    """(price key, USD per device-hour) of the plan's device: the table key ``--device`` named (or
    ``--peaks`` with a named ``--device``), looked up in ``prices`` (defaults, suite, ``--price``)."""
    key = (device or "").lower() or None
    return key, (prices.get(key) if key else None)


def usd(seconds: float, target: Target, usd_per_hour: float) -> float:
    """What ``seconds`` on ``target`` cost: every device of the variant is paid for (``devices``)."""
    return devices.usd(seconds, usd_per_hour) * target.devices


def _bytes_per_value(counted: dict, dtype: str) -> float:
    return weight_bytes(counted, dtype) / counted["params"]["total"]


def model_shape(counted: dict, dtype: str) -> roofline.ModelShape:
    """The roofline's ModelShape from the counts (so its weights equal the counted total)."""
    c, p = counted["config"], counted["params"]
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    if c.get("model_type") == "deepseek_v3":  # transformers caches the expanded keys and values
        kv_heads, head_dim = heads, (c["qk_nope_head_dim"] + c["qk_rope_head_dim"] + c["v_head_dim"]) / 2
    else:
        kv_heads = c.get("num_key_value_heads") or heads
        head_dim = c.get("head_dim") or h // heads
    tied = bool(c.get("tie_word_embeddings", False))
    routed, moe_layers = _routed(counted)
    experts = p["num_experts"] or 0
    embed = vocab * h
    other = p["total"] - embed - (0 if tied else embed) - routed
    per_expert = routed / (moe_layers * experts) if moe_layers and experts else 0
    k = p["experts_per_token"] if p["experts_per_token"] is not None else counted["build"]["top_k"] or 0
    bpv = _bytes_per_value(counted, dtype)
    return roofline.ModelShape(layers=layers, hidden=h, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                               vocab=vocab, embed_params=embed, head_params=embed, tied=tied, other_params=other,
                               moe_layers=moe_layers, num_experts=experts, top_k=k, expert_params=per_expert,
                               bytes_per_param=bpv, kv_bytes=bpv)


def _routed(counted: dict) -> tuple[int, int]:
    """(routed expert parameters, MoE layers) of a counted variant."""
    if counted["params"]["num_experts"] is None:
        return 0, 0
    if counted["tensors"] is not None:
        blocks = headers.expert_blocks(headers.model_tensors(counted["tensors"], counted["config"]))
        return sum(size for size, _ in blocks.values()), len(blocks)
    config = counted["config"]
    none_active = derive.count(config, experts_per_token=0)["active"]
    return counted["params"]["total"] - none_active, sum(derive.sparse_layers(derive.resolved(config)))


# --- probe points ------------------------------------------------------------------------------

@attrs.frozen
class Point:
    batch: int
    prompt: int      # prefill length
    new_tokens: int  # decode steps after it
    passes: int      # how many times the point runs


def probe_points(probe: dict) -> list[Point]:
    config = parse_probe(probe["name"], probe.get("params"))
    timed = 1 + getattr(config, "warmup", 0) + getattr(config, "repeats", 0)
    if isinstance(config, LatencyConfig):
        return ([Point(1, n, 0, timed) for n in config.prompt_lengths]
                + [Point(b, c, config.new_tokens, timed) for b in config.batch_sizes for c in config.context_lengths])
    if isinstance(config, ThroughputConfig):
        return ([Point(b, config.prompt_length, 0, timed) for b in config.batch_sizes]
                + [Point(b, config.context_length, config.new_tokens, timed) for b in config.batch_sizes])
    if isinstance(config, MemoryConfig):
        return [Point(b, c, 1, 1) for b in config.batch_sizes for c in config.context_lengths]
    if isinstance(config, RoutingConfig):
        return [Point(b, config.prompt_length, config.new_tokens, 1) for b in config.batch_sizes]
    return []


def decode_ms(shape: roofline.ModelShape, batch: int, context: float, peaks: roofline.Peaks) -> float:
    return roofline.roofline_ms(roofline.decode_cost(shape, batch, context), peaks)["roofline_ms"]


def point_seconds(shape: roofline.ModelShape, point: Point, peaks: roofline.Peaks) -> float:
    prefill = roofline.roofline_ms(roofline.prefill_cost(shape, point.batch, point.prompt), peaks)["roofline_ms"]
    decode = sum(decode_ms(shape, point.batch, point.prompt + i, peaks) for i in range(point.new_tokens))
    return point.passes * (prefill + decode) / 1e3


# --- tasks -----------------------------------------------------------------------------------

def task_tokens(task: dict, given: dict[str, int]) -> tuple[int | None, str]:
    """(tokens an evaluation of ``task`` runs through the model, where the number comes from)."""
    if task["name"] in given:
        return given[task["name"]], "--task-tokens"
    path = task.get("path")
    if path:
        folder = Path(path).parent
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.suffix in DATA_SUFFIXES)
        if size:
            return size, "data bytes"
    return None, "unknown: give --task-tokens NAME=N"


# --- the plan --------------------------------------------------------------------------------

def variant_estimate(variant: dict, probes: list[dict], target: Target) -> dict:
    counted = count_variant(variant)
    dtype = variant["dtype"]
    shape = model_shape(counted, dtype)
    peaks = target.peaks(dtype)
    weights = weight_bytes(counted, dtype)
    points = [pt for probe in probes for pt in probe_points(probe)]
    kv = max((int(shape.kv_bytes_per_token() * pt.batch * (pt.prompt + pt.new_tokens)) for pt in points), default=0)
    decode = {}
    for pt in points:
        if pt.new_tokens:
            decode.setdefault(f"b{pt.batch}@{pt.prompt}", decode_ms(shape, pt.batch, pt.prompt, peaks))
    need = weights + kv
    capacity = target.memory_bytes * target.devices
    fits = need <= capacity
    advice = None
    if not fits:
        bpv = _bytes_per_value(counted, dtype)
        if bpv > 2 and need * 2 / bpv <= capacity:
            advice = "fits in bfloat16"
        else:
            advice = f"needs {math.ceil(need / target.memory_bytes)} x {target.name}"
            if bpv > 2:
                advice += f", or {math.ceil(need * 2 / bpv / target.memory_bytes)} in bfloat16"
    return {"variant": variant["name"], "params": counted["params"], "build": counted["build"], "dtype": dtype,
            "weight_bytes": weights, "kv_bytes": kv, "bytes": need, "device_bytes": capacity, "fits": fits,
            "to_fit": advice, "decode_ms": decode, "shape": shape, "peaks": peaks}


def job_seconds(job, est: dict, target: Target, mfu: float, task_counts: dict[str, int],
                train_start: dict | None = None) -> tuple[float | None, str]:
    """(estimated seconds of one planned job, how)."""
    spec, shape, peaks = job.spec, est["shape"], est["peaks"]
    flops_s = peaks.tflops * 1e12 * mfu * target.devices
    if spec["kind"] == "describe":
        return 0.0, "counted"
    if spec["kind"] == "probe":
        pts = probe_points(spec["probe"])
        return sum(point_seconds(shape, pt, peaks) for pt in pts), "roofline"
    if spec["kind"] == "evaluate":
        tokens, source = task_tokens(spec["task"], task_counts)
        if tokens is None:
            return None, source
        if "shard" in spec:
            tokens = tokens / spec["shard"]["count"]
        return 2.0 * est["params"]["active"] * tokens / flops_s, f"{tokens:,.0f} tokens ({source}), mfu {mfu:g}"
    if spec["kind"] == "train":
        train = spec["train"]
        # the training job runs under autocast (bfloat16 by default): that dtype's peak
        flops_s = target.peaks(train.get("autocast") or "float32").tflops * 1e12 * mfu * target.devices
        per_token = (6 * est["params"]["active_no_embed"]
                     + 12 * shape.layers * shape.heads * shape.head_dim * train.get("seq_len", 128))
        tokens = train.get("tokens", 0)
        return per_token * tokens / flops_s, f"{tokens:,} tokens, mfu {mfu:g}"
    return None, "unknown kind"
