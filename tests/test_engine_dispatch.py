"""The coordinator sends a job only to a worker hosting its engine (the engines its hello lists), and
fails at once, with the reason, a job no worker can host. Scripted peers (tests/scripted_peer.py) on
real ZeroMQ sockets stand in for daemons; no vLLM needed."""

from __future__ import annotations

import time

from scripted_peer import DEADLINE_S, FAST, Peer

from harness.coordinator import Coordinator, Job

VLLM = {"name": "vllm", "params": {"tensor_parallel_size": 1, "kv_cache_bytes": None, "max_model_len": None}}


def job(key, engine=None):
    variant = {"name": f"moe-{key}" + ("[vllm]" if engine else "")}
    if engine:
        variant["engine"] = engine
    return Job(key, {"kind": "probe", "variant": variant, "n": key})


def run(coord, jobs):
    outcomes = {}
    coord.run(jobs, lambda j, o: outcomes.__setitem__(j.key, o), deadline_s=DEADLINE_S)
    return outcomes


def test_a_job_names_its_engine_from_the_variant():
    assert job("a").engine == "transformers"
    assert job("b", VLLM).engine == "vllm"


def test_vllm_jobs_go_only_to_workers_that_list_vllm(endpoints, peers):
    plain = Peer(endpoints[0], lambda p: ("result", {"n": p["n"]}), engines={"transformers": "5.19"})
    both = Peer(endpoints[1], lambda p: ("later", 0.05, {"n": p["n"]}),
                engines={"transformers": "5.19", "vllm": "0.32.0"})
    old = Peer(endpoints[2], lambda p: ("result", {"n": p["n"]}))  # a hello without `engines`: transformers
    peers.extend([plain, both, old])
    jobs = [job(f"v{i}", VLLM) for i in range(4)] + [job(f"t{i}") for i in range(6)]
    with Coordinator(endpoints, **FAST) as c:
        c.hello(timeout_s=5)
        outcomes = run(c, jobs)
    assert all(o["status"] == "ok" for o in outcomes.values()), outcomes
    assert {outcomes[f"v{i}"]["worker"] for i in range(4)} == {endpoints[1]}
    assert not any("engine" in p["variant"] for p in plain.jobs + old.jobs)
    assert plain.jobs and old.jobs  # transformers jobs still spread over every worker


def test_a_job_no_worker_can_host_fails_at_once_with_the_reason(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda p: ("result", {"n": p["n"]}), engines={"transformers": "5.19"}))
    peers.append(Peer(endpoints[1], lambda p: ("result", {"n": p["n"]})))
    t0 = time.monotonic()
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        outcomes = run(c, [job("v", VLLM), job("t")])
    assert time.monotonic() - t0 < 5  # failed at once, not at the deadline
    assert outcomes["t"]["status"] == "ok"
    assert outcomes["v"] == {
        "status": "failed", "worker": None, "attempts": 0,
        "error": f"no worker can run engine vllm for moe-v[vllm]: none of the 2 worker(s) lists vllm in its "
                 f"hello ({endpoints[0]}: transformers; {endpoints[1]}: transformers)"}


def test_when_the_only_vllm_worker_is_lost_its_jobs_fail_and_the_rest_run(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda p: ("result", {"n": p["n"]}), engines={"transformers": "5.19"}))
    vllm = Peer(endpoints[1], lambda p: ("result", {"n": p["n"]}), engines={"transformers": "5.19", "vllm": "0.32"})
    peers.append(vllm)
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        vllm.stop()  # gone before any job
        outcomes = run(c, [job("v", VLLM), job("t")])
    assert outcomes["t"]["status"] == "ok"
    assert outcomes["v"]["status"] == "failed"
    assert outcomes["v"]["error"].startswith("no worker can run engine vllm for moe-v[vllm]: every worker "
                                             "listing vllm was lost (")
