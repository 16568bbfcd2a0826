"""workers.host (model cache: hits, LRU eviction by memory, status) and workers.jobs (run_job dispatch)."""

from __future__ import annotations

import threading

import pytest

from moe_schema import protocol
from workers import jobs
from workers.builds.materialize import materialize
from workers.builds.params import count_params
from workers.errors import JobCancelled, JobError, Unsupported
from workers.host import Host, estimate_bytes, model_bytes
from workers.jobs import run_job

TINY_MOE = {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
            "max_position_embeddings": 64}
TINY_DENSE = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}





def variant(config=TINY_MOE, seed=0, **extra) -> dict:
    return {"name": f"v{seed}", "model": "m", "build": {"config": config, "seed": seed}, "routing": None,
            "dtype": "float32", "trust_remote_code": False, "experts_implementation": None, **extra}


def quiet(done, total, note):
    pass


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def one_model_bytes():
    import torch
    from transformers import AutoModelForCausalLM

    path = materialize(variant()["build"])
    return model_bytes(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))


# --- host ------------------------------------------------------------------------------------

def test_cache_hit_returns_the_same_model():
    host = Host("cpu")
    first = host.load(variant())
    again = host.load({**variant(), "name": "other name, same build"})
    assert not first.cached and again.cached
    assert again.model is first.model and again.tokenizer is first.tokenizer
    assert again.load_s < first.load_s
    other_dtype = host.load(variant(dtype="bfloat16"))  # another dtype is another entry
    assert not other_dtype.cached and other_dtype.model is not first.model
    status = host.status()
    assert [b["dtype"] for b in status["builds"]] == ["float32", "bfloat16"]
    assert status["builds"][0]["loads"] == 2
    assert status["held_bytes"] == sum(b["bytes"] for b in status["builds"]) > 0


def test_lru_eviction_by_memory_budget(one_model_bytes):
    host = Host("cpu", memory_budget_bytes=int(one_model_bytes * 2.5))  # room for two builds
    a, b, c = variant(seed=10), variant(seed=11), variant(seed=12)
    host.load(a)
    host.load(b)
    host.load(a)  # a is now the most recently used
    assert len(host.status()["builds"]) == 2
    host.load(c)  # evicts b, the least recently used
    held = [b_["path"] for b_ in host.status()["builds"]]
    assert held == [str(materialize(a["build"])), str(materialize(c["build"]))]
    assert host.load(a).cached and not host.load(b).cached
    assert host.status()["held_bytes"] <= host.budget_bytes


def test_a_build_bigger_than_the_budget_still_loads_alone(one_model_bytes):
    host = Host("cpu", memory_budget_bytes=one_model_bytes // 2)
    host.load(variant(seed=20))
    host.load(variant(seed=21))
    assert [b["path"] for b in host.status()["builds"]] == [str(materialize(variant(seed=21)["build"]))]


def test_out_of_memory_drops_held_builds_and_retries_once(monkeypatch):
    import workers.builds.load as host_module  # the transformers engine's loader (workers.engines.forward)

    host = Host("cpu")
    host.load(variant(seed=30))
    real, calls = host_module.load_model, []

    def oom_once(v, device, home=None, **options):  # v: the Variant the job parsed once
        calls.append(v.spec["build"]["seed"])
        if len(calls) == 1:
            raise JobError(protocol.OUT_OF_MEMORY, "out of memory")
        return real(v, device, home, **options)

    monkeypatch.setattr(host_module, "load_model", oom_once)
    assert not host.load(variant(seed=31)).cached and calls == [31, 31]
    assert [b["path"] for b in host.status()["builds"]] == [str(materialize(variant(seed=31)["build"]))]
    calls.clear()
    host.evict_all()
    monkeypatch.setattr(host_module, "load_model", lambda *a, **k: (_ for _ in ()).throw(
        JobError(protocol.OUT_OF_MEMORY, "out of memory")))
    with pytest.raises(JobError, match="out of memory"):  # nothing left to drop: the error stands
        host.load(variant(seed=32))


def test_estimate_reads_safetensors_headers(one_model_bytes):
    path = materialize(variant()["build"])
    fp32 = estimate_bytes(path, "float32")
    assert 0.9 * one_model_bytes <= fp32 <= one_model_bytes  # buffers (rotary) are not saved
    assert estimate_bytes(path, "bfloat16") == fp32 // 2 == estimate_bytes(path, "auto") // 2
    assert estimate_bytes("org/hub-id", "float32") == 0


def test_default_budget_status_and_device_info():
    host = Host("cpu")
    mem = host.memory()
    assert 0 < host.budget_bytes <= mem["total"] // 2
    status = host.status()
    assert status["device"] == "cpu" and status["builds"] == [] and status["held_bytes"] == 0
    assert set(status["memory"]) >= {"total", "free"}
    info = host.device_info()
    assert info["device"] == "cpu" and info["type"] == "cpu" and info["name"]
    assert info["total_memory"] == mem["total"] > 0


@pytest.mark.parametrize("device, message", [("tpu9", "not a torch device"),
                                             ("cuda:0", "CUDA is not available")])
def test_bad_device(device, message):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=message):
        Host(device)


def test_bad_variant_is_refused_before_loading():
    with pytest.raises(JobError, match=r"variant\.dtype") as err:
        Host("cpu").load(variant(dtype="float8"))
    assert err.value.code == protocol.INVALID_PARAMS


def test_routing_is_applied_on_every_load_of_a_cached_model():
    import torch

    host = Host("cpu")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    native = host.load(variant())
    with torch.no_grad():
        base = native.model(ids).logits
    topk1 = host.load(variant(routing={"name": "topk", "params": {"k": 1}}))
    assert topk1.cached and topk1.model is native.model and topk1.routing_session is not None
    with torch.no_grad():
        assert not torch.allclose(topk1.model(ids).logits, base)
    result = run_job({"kind": "describe", "variant": variant(routing={"name": "topk", "params": {"k": 1}})},
                     host, quiet, threading.Event())
    assert result["params"] == count_params(topk1.model, experts_per_token=1)
    again = host.load(variant())  # native routers restored
    with torch.no_grad():
        assert torch.allclose(again.model(ids).logits, base, atol=1e-6)


def test_dynamic_routing_params_follow_the_measured_experts_per_token():
    import torch

    from workers.jobs import variant_params

    loaded = Host("cpu").load(variant(routing={"name": "topp", "params": {"p": 0.6, "min_k": 1, "max_k": 4}}))
    unmeasured = variant_params(loaded, loaded.routing_session.telemetry())
    assert unmeasured["experts_per_token"] is None and unmeasured["active_measured"] is False
    with torch.no_grad():
        loaded.model(torch.tensor([list(range(40))]))
    telemetry = loaded.routing_session.telemetry()
    mean = telemetry["summary"]["experts_per_token_mean"]
    assert 1 <= mean <= 4
    measured = variant_params(loaded, telemetry)
    assert measured == {**count_params(loaded.model, experts_per_token=mean), "active_measured": True}


@pytest.mark.parametrize("config, routing, error, message", [
    (TINY_MOE, {"name": "topq", "params": {}}, JobError, r"variant\.routing: .*'topq'.*did you mean 'top"),
    (TINY_MOE, {"name": "topk", "params": {"k": 0}}, JobError,
     r"variant\.routing\.params\.k: routing strategy 'topk': k must be a positive integer"),
    (TINY_DENSE, {"name": "topk", "params": {"k": 1}}, Unsupported, "has no MoE layers"),
])
def test_bad_routing_is_a_clear_error(config, routing, error, message):
    with pytest.raises(error, match=message):
        Host("cpu").load(variant(config, routing=routing))


# --- jobs ------------------------------------------------------------------------------------

def test_describe_via_run_job():
    host = Host("cpu")
    notes = []
    job = {"kind": "describe", "variant": variant()}
    result = run_job(job, host, lambda d, t, n: notes.append((d, t, n)), threading.Event())
    model = host.load(variant()).model
    assert result["params"] == count_params(model)
    assert result["params"]["num_experts"] == 4 and result["params"]["experts_per_token"] == 2.0
    build = result["build"]
    assert build["family"] == "olmoe" and build["moe"] is True and build["num_layers"] == 2
    assert build["hidden_size"] == 32 and build["num_experts"] == 4 and build["top_k"] == 2
    assert build["dtype"] == "float32" and build["checkpoint"] == str(materialize(job["variant"]["build"]))
    assert result["timings"]["model_cached"] is False and result["timings"]["load_s"] > 0
    env = result["env"]
    assert env["device"] == "cpu" and env["pid"] > 0 and env["hostname"]
    assert set(env["versions"]) >= {"torch", "transformers", "lm_eval", "harness"}
    assert notes and notes[-1][0] == notes[-1][1]
    dense = run_job({"kind": "describe", "variant": variant(TINY_DENSE)}, host, quiet, threading.Event())
    assert dense["build"]["moe"] is False and dense["params"]["active"] == dense["params"]["total"]
    assert run_job(job, host, quiet, threading.Event())["timings"]["model_cached"] is True


def test_every_kind_gets_the_shared_entries(monkeypatch):
    """evaluate/probe functions (other modules) return only their own part; run_job adds the rest."""
    calls = []

    def fake_run(job, loaded, progress, cancelled):
        calls.append((job["kind"], loaded.variant["name"], cancelled))
        return {"metrics": {"t": {"acc": 0.5}}, "timings": {"eval_s": 1.0}}

    monkeypatch.setattr(jobs, "_lazy", lambda module, kind: fake_run)
    event = threading.Event()
    result = run_job({"kind": "evaluate", "variant": variant(), "task": {"name": "t"}}, Host("cpu"), quiet, event)
    assert calls == [("evaluate", "v0", event)]
    assert result["metrics"] == {"t": {"acc": 0.5}}
    assert result["timings"]["eval_s"] == 1.0 and "load_s" in result["timings"] and "run_s" in result["timings"]
    assert {"params", "build", "routing", "env"} <= set(result)


def test_train_gets_the_host_not_a_loaded_model(monkeypatch):
    seen = []
    monkeypatch.setattr(jobs, "_lazy", lambda module, kind: lambda job, host, p, c: seen.append((module, host))
                        or {"train": {"steps": 1}})
    host = Host("cpu")
    result = run_job({"kind": "train", "variant": variant(), "train": {}}, host, quiet, threading.Event())
    assert seen == [("workers.training.job", host)]
    assert result["train"] == {"steps": 1} and result["timings"]["model_cached"] is False and "env" in result
    assert host.status()["builds"] == []  # run_job loaded nothing: training builds its own model


def test_cancelled_before_start():
    event = threading.Event()
    event.set()
    with pytest.raises(JobCancelled):
        run_job({"kind": "describe", "variant": variant()}, Host("cpu"), quiet, event)


@pytest.mark.parametrize("job, message", [
    ([], "job: expected a map, got list"),
    ({"kind": "explode", "variant": {}}, r"job\.kind: unknown job kind 'explode'; known: describe, evaluate"),
    ({"kind": "describe"}, "job: missing 'variant'"),
    ({"kind": "describe", "variant": {"build": {}}}, r"variant\.build: give exactly one"),
    ({"kind": "evaluate", "variant": variant()}, r"job\.task: an evaluate job needs a map with a string 'name'"),
    ({"kind": "probe", "variant": variant(), "probe": {"params": {}}}, r"job\.probe: .*string 'name'"),
])
def test_bad_jobs_are_invalid_params(job, message):
    with pytest.raises(JobError, match=message) as err:
        run_job(job, Host("cpu"), quiet, threading.Event())
    assert err.value.code == protocol.INVALID_PARAMS


def test_shipped_task_files_unpack_under_the_hosts_home(monkeypatch, tmp_path):
    """A worker started with its own home (``harness worker --home``) keeps shipped task folders
    there, not under the process's default home (``loaded.home`` was once always None)."""
    from moe_schema.taskfiles import bundle, folder_digest

    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "t.yaml").write_text("task: t\n")
    digest, _ = folder_digest(folder / "t.yaml")
    seen = []
    monkeypatch.setattr(jobs, "_lazy", lambda module, kind: lambda job, loaded, *_: seen.append(job["task"]) or {})
    home = tmp_path / "home"
    task = {"name": "t", "path": "/elsewhere/t.yaml", "digest": digest, "files": bundle(folder / "t.yaml")}
    run_job({"kind": "evaluate", "variant": variant(), "task": task}, Host("cpu", home=home), quiet, threading.Event())
    assert seen[0]["path"] == str(home / "tasks" / digest / "t.yaml")
    assert (home / "tasks" / digest / "t.yaml").read_text() == "task: t\n"
