"""MoE decode speed by experts implementation, against the memory/compute roofline (issue 8).

    python benchmarks/moe_decode.py                # --shape small, CPU, float32 (well under a minute)
    python benchmarks/moe_decode.py --shape 1b     # dense 1.18B Llama and OLMoE-1B-7B shapes, bf16, CUDA

Builds randomly initialised models from configs (nothing is downloaded): a dense Llama (d2048, 16
layers, FFN 8192 at ``--shape 1b``) and an OLMoE of the same width (64 experts, top-8, expert FFN
1024). Times one decode step (ms per token: one new token for every sequence of the batch against a
static KV cache of ``--context`` tokens) with the latency probe's machinery (workers.probes.steps:
CUDA graphs on GPU, eager on CPU), for transformers' experts implementations and the harness's own
(workers.experts), and prints each with its roofline (moe_schema.roofline) and measured/roofline.
``--paths`` adds the harness forced onto each of its torch paths (``harness:gather`` ...); on CUDA the
fused Triton kernels run as ``harness_triton``. Before timing, each implementation's logits of one
forward are checked against eager (max abs difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {
    # hidden, layers, heads, vocab, experts, top-k, expert width (the dense FFN is top-k x width)
    "small": dict(hidden=128, layers=2, heads=4, vocab=1024, experts=64, k=8, width=128),
    "1b": dict(hidden=2048, layers=16, heads=16, vocab=50304, experts=64, k=8, width=1024),
}
TRANSFORMERS_IMPLEMENTATIONS = ("eager", "grouped_mm", "batched_mm")


def configs(s: dict) -> dict:
    """name -> config dict (with model_type) of the dense model and the MoE model of one shape."""
    common = dict(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                  num_key_value_heads=s["heads"], vocab_size=s["vocab"], max_position_embeddings=4096,
                  tie_word_embeddings=False, eos_token_id=None, bos_token_id=None, pad_token_id=None)
    return {
        "dense": dict(common, model_type="llama", intermediate_size=s["k"] * s["width"]),
        "moe": dict(common, model_type="olmoe", num_experts=s["experts"], num_experts_per_tok=s["k"],
                    intermediate_size=s["width"]),
    }


def build(cfg: dict, device: str, dtype):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(cfg)
    model_type = cfg.pop("model_type")
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=dtype).eval()


def implementation(model, name: str):
    """Switch the model to ``name`` ("harness:gather" forces a harness path); return a context to run in."""
    import contextlib

    from workers.experts import force_path

    base, _, path = name.partition(":")
    model.set_experts_implementation(base)
    return force_path(path) if path else contextlib.nullcontext()


def parity(model, names: list[str], device: str) -> dict:
    """Max abs difference of each implementation's logits (one forward, 2 x 8 tokens) from eager's."""
    import torch

    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0)).to(device)
    out = {}
    with torch.no_grad():
        for name in ["eager", *names]:
            with implementation(model, name):
                out[name] = model(ids).logits.float()
    return {name: (out[name] - out["eager"]).abs().max().item() for name in names}


def time_decode(model, cfg: dict, args, peaks) -> list[dict]:
    """One row per batch size (the probe's row): ms per decode step, its roofline, the execution mode."""
    import torch

    from moe_schema.roofline import ModelShape
    from workers.engines.transformers.steps import TransformersProbeContext as ProbeContext, resolve_compile
    from workers.probes.steps import timed_row

    bpp = torch.tensor([], dtype=model.dtype).element_size()
    shape = ModelShape.from_config(cfg, bytes_per_param=bpp)
    device = next(model.parameters()).device
    rows = []
    for batch in args.batch_sizes:
        ctx = ProbeContext(model, None, shape, peaks, resolve_compile(None, device), seed=0, progress=None,
                           cancelled=None)
        samples, census = ctx.decode(batch, args.context, args.new_tokens, args.warmup, args.repeats)
        row = timed_row(ctx, "decode", batch, args.context, samples, census, args.new_tokens)
        row["mode"] = ctx.compile
        row["ms_best"] = min(samples) * 1e3  # best of the samples: robust on a shared machine
        row["best_over_roofline"] = row["ms_best"] / row["roofline_ms"]
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda for --shape 1b, else cpu)")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--batch-sizes", default="1,8,64,256")
    ap.add_argument("--implementations", default=None,
                    help="comma-separated (default: eager, grouped_mm, batched_mm, harness, and harness_triton on cuda)")
    ap.add_argument("--paths", action="store_true", help="also time the harness forced onto each of its paths")
    ap.add_argument("--context", type=int, default=None, help="cached tokens (default 32 small, 128 1b)")
    ap.add_argument("--new-tokens", type=int, default=None, help="timed steps per pass (default 2 small, 8 1b)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None, help="timed passes (default 2 small, 5 1b)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    args.device = args.device or ("cuda" if args.shape == "1b" else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    small = args.shape == "small"
    args.context = args.context or (32 if small else 128)
    args.new_tokens = args.new_tokens or (2 if small else 8)
    args.repeats = args.repeats or (2 if small else 5)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch

    from workers.experts import PATHS, TRITON_NAME, register, unsupported
    from moe_schema.roofline import resolve_peaks

    torch.set_num_threads(args.threads)
    register()
    default = [*TRANSFORMERS_IMPLEMENTATIONS, "harness"] + ([TRITON_NAME] if args.device == "cuda" else [])
    names = [n.strip() for n in (args.implementations or ",".join(default)).split(",") if n.strip()]
    if args.paths:  # the triton path is harness_triton's
        names += [f"harness:{p}" for p in PATHS if p != "triton" and (p != "looped" or args.device == "cpu")]
    dtype = getattr(torch, args.dtype)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peaks = resolve_peaks(device_name, args.dtype)
    cfgs = configs(SHAPES[args.shape])

    results = []  # (model, implementation, rows)
    model = build(cfgs["dense"], args.device, dtype)
    results.append(("dense", "-", time_decode(model, cfgs["dense"], args, peaks)))
    print(f"timed dense ({cfgs['dense']['model_type']})", flush=True)
    del model
    model = build(cfgs["moe"], args.device, dtype)
    for name in list(names):
        why = unsupported(model, name.partition(":")[0], args.device)
        if why is not None:
            print(f"skipped experts_implementation={name}: {why}", flush=True)
            names.remove(name)
    diffs = parity(model, names, args.device)
    for name in names:
        with implementation(model, name):
            results.append(("moe", name, time_decode(model, cfgs["moe"], args, peaks)))
        print(f"timed moe ({cfgs['moe']['model_type']}) experts_implementation={name}, "
              f"max |logits - eager| {diffs[name]:.2e}", flush=True)

    print(f"\ndevice {peaks.name}: {peaks.bandwidth_gbs:.1f} GB/s, {peaks.tflops:.3g} TFLOP/s ({peaks.source}); "
          f"{args.dtype}; shape {args.shape}; context {args.context}; {args.new_tokens} steps x {args.repeats}; "
          f"cells: ms per decode token, best of {args.new_tokens * args.repeats} (best / roofline)\n")
    head = f"{'model':<6} {'experts impl':<16} {'mode':<6}" + "".join(f"{f'batch {b}':>18}" for b in args.batch_sizes)
    print(head)
    print("-" * len(head))
    for kind, name, rows in results:
        modes = sorted({r["mode"] for r in rows})
        cells = "".join(f"{r['ms_best']:>9.3f} ({r['best_over_roofline']:>5.1f}x)" for r in rows)
        print(f"{kind:<6} {name:<16} {'/'.join(modes):<6}{cells}")
    roofs = {r["batch_size"]: r["roofline_ms"] for r in results[1][2]} if len(results) > 1 else {}
    dense_roofs = "".join(f"{r['roofline_ms']:>18.4f}" for r in results[0][2])
    print(f"{'dense':<6} {'roofline ms':<16} {'':<6}{dense_roofs}")
    if roofs:
        print(f"{'moe':<6} {'roofline ms':<16} {'':<6}" + "".join(f"{roofs[b]:>18.4f}" for b in args.batch_sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
