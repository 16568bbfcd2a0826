"""``run(job, host, progress, cancelled)``: the ``train`` job (spec: ``moe_schema.train``).

Load the variant's build in float32 on the host's device, install its routing strategy (token
choice = ``None``/``native``/``topk``, ``expert_choice``, ``aux_free``, ...) with workers.routing,
and train with AdamW (no decay on norms and biases), warm-up then cosine, gradient clipping,
bf16 autocast on CUDA, and for MoE builds the balance and z losses of ``workers.training.losses``.
At a handful of log-spaced token counts the held-out loss is measured on a fixed small batch of
the knowledge corpus's held-out biographies (``workers.training.heldout``), outside the training
clock, and kept as ``train.heldout_curve``. Every ``checkpoint_every`` steps the resume state is saved (``workers.training.checkpoint``); a
rerun of the same job after its worker died continues from it. On completion the weights and the
tokenizer are saved as an ordinary Hugging Face checkpoint in ``trained_dir(job)`` together with
``train.json`` (this job's result), and a rerun returns that result at once.

MFU = model FLOPs / s over the device's peak: FLOPs per token ``6 * active non-embedding params +
12 * layers * heads * head_dim * seq_len`` (PaLM, appendix B); the peak comes from a table of dense
bf16 tensor-core peaks by GPU name; on CPU or an unknown GPU MFU is null with ``mfu_note`` saying why.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid

import numpy as np
import torch

from moe_schema import protocol
from workers.builds.load import load_model
from workers.builds.params import count_params
from moe_schema.capacity import regime
from workers.corpora.load import prepare
from moe_schema.corpus import CorpusError
from workers.errors import JobCancelled, JobError
from workers.training import checkpoint
from workers.training.data import Batches
from workers.training.heldout import HeldoutEval, curve_steps
from workers.training.losses import RouterLosses, lm_loss
from workers.training.schedule import lr_at
from moe_schema.devices import table_peaks
from moe_schema.locks import KeyLock
from moe_schema.train import TrainSpecError, check_train_job, resume_dir, train_key, trained_dir

def peak_flops(device: torch.device) -> tuple[float | None, str | None]:
    """Dense bf16 peak FLOP/s of a GPU from the one device table (``moe_schema.devices``), or why not."""
    if device.type != "cuda":
        return None, f"no known peak FLOP/s for device type {device.type!r}; MFU needs a GPU from the table"
    return peak_flops_of(torch.cuda.get_device_name(device))


def peak_flops_of(name: str) -> tuple[float | None, str | None]:
    peaks = table_peaks(name, "bfloat16")
    if peaks is None:
        return None, f"GPU {name!r} is not in the peak FLOP/s table"
    return peaks.tflops * 1e12, None


def flops_per_token(model, params: dict, seq_len: int) -> float:
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 6 * params["active_no_embed"] + 12 * cfg.num_hidden_layers * heads * head_dim * seq_len


def _bad(exc: Exception) -> JobError:
    return JobError(protocol.INVALID_PARAMS, str(exc))


def run(job: dict, host, progress, cancelled) -> dict:
    try:
        train, corpus_spec, seed = check_train_job(job)
    except TrainSpecError as exc:
        raise _bad(exc) from None
    home = getattr(host, "home", None)
    # one trainer per train key on this host: two runs sharing a home shared its resume folder
    # and deleted each other's files; the second waits, then finds the checkpoint and reuses it
    rdir = resume_dir(job, home)
    lock = KeyLock(rdir.with_name(rdir.name + ".lock"))
    if not lock.try_acquire():
        progress(0, 1, "waiting for another trainer of this key on this host")
        if not lock.acquire(stop=cancelled.is_set):
            raise JobCancelled("train job cancelled while another trainer of its key ran on this host")
    try:
        return _run_locked(job, host, progress, cancelled, train, corpus_spec, seed, home)
    finally:
        lock.release()


def _run_locked(job, host, progress, cancelled, train, corpus_spec, seed, home) -> dict:
    final = trained_dir(job, home)
    if (final / "train.json").is_file():
        result = json.loads((final / "train.json").read_text())
        result["train"]["reused"] = True
        progress(1, 1, "already trained")
        return result
    try:
        corpus = prepare(corpus_spec, home)
        batches = Batches(corpus.tokens, train["batch_size"], train["seq_len"], seed)
    except (CorpusError, ValueError) as exc:
        raise _bad(exc) from None

    device = torch.device(getattr(host, "device", "cpu"))
    if device.type == "cuda" and hasattr(host, "evict_all"):
        host.evict_all()  # training needs the memory the model cache holds
    variant = {**job["variant"], "dtype": "float32"}
    model, tokenizer, _ = load_model(variant, str(device), home)
    session = None
    if variant.get("routing") is not None:
        from workers.engines.transformers.routing import apply_routing

        session = apply_routing(model, variant["routing"])
    params = count_params(model)
    strategy = session.strategy if session is not None else None
    encode = None
    if corpus.meta.get("tokenizer") == "word":  # the corpus's own tokenizer replaces the build's bytes
        tokenizer = corpus_tokenizer(corpus, model)
        encode = lambda text: np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    heldout = None
    if train["heldout_points"] and corpus.meta.get("kind") == "knowledge":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        heldout = HeldoutEval.create(corpus.meta, train["heldout_docs"],
                                     int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30), device,
                                     prefix, **({"encode": encode} if encode else {}))
    result = _train(job, model, batches, train, seed, params, device, progress, cancelled, home, strategy,
                    heldout)
    routing_state = {}
    if session is not None:
        result["routing"] = session.telemetry()
        routing_state = session.strategy.state()  # e.g. aux_free's learned bias, saved beside the weights
        session.restore()  # native routers back: the saved checkpoint is an ordinary one
    result["params"] = params
    result["build"] = {"family": model.config.model_type, "moe": params["num_experts"] is not None,
                       "checkpoint": str(final), "source": "trained", "train_key": train_key(job),
                       "num_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size,
                       "num_experts": params["num_experts"], "dtype": "float32"}
    if corpus.meta.get("profile") == "bios":
        result["capacity"] = measure_capacity(model, corpus, device)
    reg = regime(corpus.meta, result["train"]["tokens"], params)
    result["corpus"] = {"path": str(corpus.path), "kind": corpus.meta["kind"], "tokens": corpus.meta["tokens"],
                        "tasks": corpus.meta.get("tasks"), "buckets": corpus.meta.get("buckets"),
                        "value_counts": corpus.meta.get("value_counts"), "entities": corpus.meta.get("entities"),
                        "regime": reg, "tokens_per_param": reg["tokens_per_param"],
                        "exposures_per_fact": reg.get("exposures_per_fact"), "fact_bits": reg.get("fact_bits"),
                        "capacity_bits": reg.get("capacity_bits_at_2_per_param"),
                        "tokenizer": corpus.meta.get("tokenizer", "byte"), "profile": corpus.meta.get("profile"),
                        "tokens_per_document": corpus.meta.get("tokens_per_document")}
    _save_final(final, model, tokenizer, result, routing_state, variant.get("routing"))
    shutil.rmtree(resume_dir(job, home), ignore_errors=True)
    return result


def corpus_tokenizer(corpus, model):
    """The word tokenizer a ``tokenizer: word`` corpus saved, checked against the model's vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(corpus.path / "tokenizer"))
    if model.config.vocab_size < len(tokenizer):
        raise _bad(ValueError(f"variant.build.config.vocab_size: {model.config.vocab_size} is smaller than the "
                              f"corpus's word tokenizer ({len(tokenizer)} tokens)"))
    return tokenizer


def measure_capacity(model, corpus, device) -> dict:
    """Allen-Zhu & Li's capacity scoring over every person of a bios corpus (``workers.training.capacity``)."""
    from workers.corpora.bios import load_persons
    from workers.training.capacity import measure

    persons = load_persons(corpus.path / "persons.npz")
    was = model.training
    model.eval()
    try:
        return measure(lambda ids: model(input_ids=ids).logits, persons, corpus.meta["spec"]["seed"],
                       corpus.meta.get("tokenizer", "byte"), device)
    finally:
        model.train(was)


def _diverged(step: int, loss: float, aux: tuple[float, float], lr: float) -> JobError:
    """A non-finite loss ends the job: a diverged run is a failure, never a result (its NaN curve
    would be cached and the builds trained on it evaluated "ok" with NaN metrics)."""
    what = f"train loss is {loss}" if not math.isfinite(loss) else \
        f"train router loss (balance, z) is {aux[0]}, {aux[1]}"
    return JobError(protocol.JOB_FAILED, f"{what} at step {step} (lr {lr:g}): the training diverged; "
                    "lower train.lr, or raise train.warmup_steps")


def step_loss(model, batch, router, train: dict, autocast: dict) -> tuple:
    """The training objective of one batch: ``(total, lm, balance, z)``; ``total`` is what is
    differentiated: LM loss, plus for MoE builds ``aux_loss_coef * balance + z_loss_coef * z``."""
    with torch.autocast(**autocast):
        logits = model(input_ids=batch[:, :-1]).logits
    loss = lm_loss(logits, batch[:, 1:])
    balance, z = router.pop()
    total = loss + train["aux_loss_coef"] * balance + train["z_loss_coef"] * z if router.moe else loss
    return total, loss, balance, z


def _param_groups(model, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _train(job, model, batches, train, seed, params, device, progress, cancelled, home, strategy,
           heldout: HeldoutEval | None = None) -> dict:
    torch.manual_seed(seed)
    steps = math.ceil(train["tokens"] / (train["batch_size"] * train["seq_len"]))
    tokens_per_step = train["batch_size"] * train["seq_len"]
    optimizer = torch.optim.AdamW(_param_groups(model, train["weight_decay"]), lr=train["lr"],
                                  betas=tuple(train["betas"]))
    rdir = resume_dir(job, home)
    state = {"curve": [], "heldout_curve": [], "elapsed_s": 0.0, "tokens_timed": 0}
    start, resumed_from = 0, None
    saved = checkpoint.latest(rdir)
    if saved is not None:
        state = checkpoint.load(saved, model, optimizer, strategy)
        state.setdefault("heldout_curve", [])
        start = resumed_from = state["step"]
    measure_at = set(curve_steps(steps, train["heldout_points"])) if heldout is not None else set()
    router = RouterLosses(model)
    use_autocast = device.type == "cuda" and train["autocast"] is not None
    amp_dtype = getattr(torch, train["autocast"]) if use_autocast else None
    model.train()
    window: list[float] = []
    aux_window: list[tuple[float, float]] = []
    t_start = time.perf_counter()
    timed_tokens = 0
    try:
        for step in range(start, steps):
            if cancelled.is_set():
                _checkpoint(rdir, step, model, optimizer, state, t_start, timed_tokens, device, strategy)
                raise JobCancelled(f"train job cancelled at step {step} of {steps}; a rerun resumes there")
            lr = lr_at(step, steps, train["lr"], train["warmup_steps"], train["min_lr_ratio"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = torch.from_numpy(batches.at(step)).to(device)
            total, loss, balance, z = step_loss(model, batch, router, train,
                                                dict(device_type=device.type, dtype=amp_dtype, enabled=use_autocast))
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window.append(loss.item())  # the loop syncs here every step anyway: the check below is free
            aux_window.append((balance.item(), z.item()))
            if not math.isfinite(window[-1] + sum(aux_window[-1])):
                raise _diverged(step + 1, window[-1], aux_window[-1], train["lr"])
            timed_tokens += tokens_per_step
            done = step + 1
            if done % train["log_every"] == 0 or done == steps:
                point = {"step": done, "tokens": done * tokens_per_step, "loss": sum(window) / len(window),
                         "lr": lr}
                if router.moe:
                    point["balance_loss"] = sum(a for a, _ in aux_window) / len(aux_window)
                    point["z_loss"] = sum(b for _, b in aux_window) / len(aux_window)
                state["curve"].append(point)
                window, aux_window = [], []
            if done in measure_at:
                t_start += _measure(heldout, model, state, done, tokens_per_step, t_start,
                                    dict(device_type=device.type, dtype=amp_dtype, enabled=use_autocast), device)
                router.captured = []  # the held-out forward's router outputs are no training signal
            progress(done, steps, f"loss {loss.item():.4f}")
            if done % train["checkpoint_every"] == 0 and done < steps:
                _checkpoint(rdir, done, model, optimizer, state, t_start, timed_tokens, device, strategy)
    finally:
        router.remove()
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = state["elapsed_s"] + time.perf_counter() - t_start
    tokens_timed = state["tokens_timed"] + timed_tokens
    tokens_per_s = tokens_timed / elapsed if elapsed > 0 else None
    fpt = flops_per_token(model, params, train["seq_len"])
    peak, note = peak_flops(device)
    achieved = fpt * tokens_per_s if tokens_per_s else None
    return {"train": {
        "curve": state["curve"], "heldout_curve": state["heldout_curve"], "steps": steps, "tokens": steps * tokens_per_step,
        "final_loss": state["curve"][-1]["loss"] if state["curve"] else None,
        "initial_loss": state["curve"][0]["loss"] if state["curve"] else None,
        "tokens_per_s": tokens_per_s, "train_s": elapsed, "flops_per_token": fpt,
        "model_flops_per_s": achieved, "peak_flops": peak,
        "mfu": achieved / peak if (achieved and peak) else None, "mfu_note": note,
        "resumed_from": resumed_from, "reused": False,
        "aux_losses": ({"balance_coef": train["aux_loss_coef"], "z_coef": train["z_loss_coef"],
                        "computed_by": "workers.training.losses"} if router.moe else None),
        "autocast": train["autocast"] if use_autocast else None, "device": str(device),
        "settings": train, "seed": seed,
    }}


def _measure(heldout, model, state, done, tokens_per_step, t_start, autocast, device) -> float:
    """Append the held-out loss after ``done`` steps to ``state["heldout_curve"]``; return the seconds
    it took, which the caller takes out of the training clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    seconds = state["elapsed_s"] + began - t_start
    state["heldout_curve"].append({"tokens": done * tokens_per_step, "seconds": seconds,
                                   "loss": heldout.loss(model, autocast)})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def _checkpoint(rdir, step, model, optimizer, state, t_start, timed_tokens, device, strategy):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    snapshot = {**state, "elapsed_s": state["elapsed_s"] + time.perf_counter() - t_start,
                "tokens_timed": state["tokens_timed"] + timed_tokens}
    checkpoint.save(rdir, step, model, optimizer, snapshot, strategy)


def _save_final(final, model, tokenizer, result: dict, routing_state: dict | None = None,
                routing: dict | None = None) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if routing_state:
            from safetensors.torch import save_file

            from workers.routing.base import ROUTING_STATE

            save_file({k: v.contiguous() for k, v in routing_state.items()}, str(tmp / ROUTING_STATE),
                      metadata={"strategy": routing["name"]})
        (tmp / "train.json").write_text(json.dumps(result, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
