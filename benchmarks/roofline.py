"""Claim 4 on this machine: does MoE decode cost follow active parameters, and where does that end?

    python benchmarks/roofline.py                 # small shapes, CPU (a minute or two)
    python benchmarks/roofline.py --shape 1b      # OLMoE-1B-7B and OLMo-1B shapes, bf16, on a GPU

Builds three randomly initialised models of one family shape: an OLMoE-shaped MoE, the dense model
with its *active* parameters (a ~1B dense model at ``--shape 1b``), and the dense model with its
*total* parameters. Times a decode step with the latency probe over batch sizes and prints every
figure with its roofline, then the crossover batch size where MoE decode stops being cheaper than
the dense-equal-total model (its step costs at least ``--threshold`` of the dense one's), measured
and predicted by the roofline with touched experts (uniform routing: E(1-(1-k/E)^B)).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {
    # hidden, layers, heads, vocab, experts, top-k, expert width
    "small": dict(hidden=128, layers=2, heads=4, vocab=1024, experts=64, k=8, width=128),
    "1b": dict(hidden=2048, layers=16, heads=16, vocab=50304, experts=64, k=8, width=1024),
}


def configs(s: dict) -> dict:
    common = dict(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                  num_key_value_heads=s["heads"], vocab_size=s["vocab"], max_position_embeddings=4096,
                  tie_word_embeddings=False, eos_token_id=None, bos_token_id=None, pad_token_id=None)
    return {
        "moe": ("olmoe", dict(common, num_experts=s["experts"], num_experts_per_tok=s["k"],
                              intermediate_size=s["width"])),
        "dense-active": ("llama", dict(common, intermediate_size=s["k"] * s["width"])),
        "dense-total": ("llama", dict(common, intermediate_size=s["experts"] * s["width"])),
    }


def measure(model_type: str, cfg: dict, args) -> tuple[list[dict], dict]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workers.probes import job

    dtype = getattr(torch, args.dtype)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=dtype).eval()
    loaded = types.SimpleNamespace(model=model, tokenizer=None, variant={}, routing_session=None)
    params = dict(prompt_lengths=[args.context], batch_sizes=args.batch_sizes, context_lengths=[args.context],
                  new_tokens=args.new_tokens, warmup=args.warmup, repeats=args.repeats)
    if args.experts_implementation and model_type == "olmoe":
        params["experts_implementation"] = args.experts_implementation
    result = job.run({"kind": "probe", "probe": {"name": "latency", "params": params}}, loaded)["probe"]
    del model
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return [r for r in result["rows"] if r["phase"] == "decode"], result


def crossover(batches, moe, dense, threshold):
    for b, m, d in zip(batches, moe, dense):
        if m >= threshold * d:
            return b
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda for --shape 1b, else cpu)")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.9, help="crossover: MoE step >= this x dense-total")
    ap.add_argument("--experts-implementation", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    args.device = args.device or ("cuda" if args.shape == "1b" else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch

    torch.set_num_threads(args.threads)
    from moe_schema.roofline import ModelShape, decode_cost, roofline_ms

    shape = SHAPES[args.shape]
    rows, device = {}, None
    for name, (model_type, cfg) in configs(shape).items():
        rows[name], result = measure(model_type, cfg, args)
        device = result["device"]
        print(f"measured {name} ({model_type}); experts_implementation={result['experts_implementation']} "
              f"compile={result['compile']}", flush=True)
    print(f"\ndevice {device['name']}: {device['bandwidth_gbs']:.1f} GB/s, {device['tflops']:.3g} TFLOP/s "
          f"({device['source']}), {args.dtype}, context {args.context}, {args.new_tokens} steps x {args.repeats}\n")

    d1 = rows["dense-active"][0]
    print(f"dense-equal-active batch {d1['batch_size']}: {d1['ms_p50']:.3f} ms, roofline {d1['roofline_ms']:.3f} ms, "
          f"measured/roofline {d1['measured_over_roofline']:.1f}\n")
    head = (f"{'batch':>5} {'moe ms':>9} {'roof':>8} {'x':>6} {'touched':>7} {'uniform':>7} "
            f"{'dense-tot ms':>12} {'roof':>8} {'x':>6} {'moe/dense meas':>14} {'pred':>6}")
    print(head)
    print("-" * len(head))
    for m, d in zip(rows["moe"], rows["dense-total"]):
        print(f"{m['batch_size']:>5} {m['ms_p50']:>9.3f} {m['roofline_ms']:>8.4f} {m['measured_over_roofline']:>6.1f} "
              f"{m['experts_touched']:>7.2f} {m['experts_touched_uniform']:>7.2f} {d['ms_p50']:>12.3f} "
              f"{d['roofline_ms']:>8.4f} {d['measured_over_roofline']:>6.1f} {m['ms_p50'] / d['ms_p50']:>14.2f} "
              f"{m['roofline_ms'] / d['roofline_ms']:>6.2f}")

    # the roofline's own prediction, from the config alone (uniform routing), same device peaks
    model_type, cfg = configs(shape)["moe"]
    bpp = 2 if args.dtype in ("bfloat16", "float16") else 4
    moe_shape = ModelShape.from_config({"model_type": model_type, **cfg}, bytes_per_param=bpp)
    dense_shape = ModelShape.from_config({"model_type": "llama", **configs(shape)["dense-total"][1]},
                                         bytes_per_param=bpp)
    from moe_schema.roofline import Peaks

    peaks = Peaks(name=device["name"], bandwidth_gbs=device["bandwidth_gbs"], tflops=device["tflops"],
                  source=device["source"])
    context = args.context + (args.new_tokens - 1) / 2
    predicted = [roofline_ms(decode_cost(moe_shape, b, context), peaks)["roofline_ms"] for b in args.batch_sizes]
    predicted_dense = [roofline_ms(decode_cost(dense_shape, b, context), peaks)["roofline_ms"]
                       for b in args.batch_sizes]
    measured_x = crossover(args.batch_sizes, [r["ms_p50"] for r in rows["moe"]],
                           [r["ms_p50"] for r in rows["dense-total"]], args.threshold)
    predicted_x = crossover(args.batch_sizes, predicted, predicted_dense, args.threshold)
    touched_x = crossover(args.batch_sizes, [r["roofline_ms"] for r in rows["moe"]],
                          [r["roofline_ms"] for r in rows["dense-total"]], args.threshold)
    print(f"\ncrossover (MoE step >= {args.threshold:.0%} of dense-equal-total): measured at batch {measured_x}; "
          f"roofline with measured touched experts: {touched_x}; roofline with uniform routing: {predicted_x} "
          f"(None: not within the batch sizes tried)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
