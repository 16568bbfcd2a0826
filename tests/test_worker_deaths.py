"""Real daemons that cannot take a job or die under one: admission refuses a build that cannot fit
before anything is built, and a SIGKILLed local daemon is reported with its signal at once."""

from __future__ import annotations

import signal
import time

from fault_jobs import collect_outcomes, env, probe_spec
from harness import derive
from harness.coordinator import Coordinator, Job
from harness.local import start_local_workers
from workers.builds.spec import build_hash

RUN_DEADLINE_S = 120  # a lost job fails the run in this long with the reason, never hangs the suite
OLMOE_1B_7B = {"model_type": "olmoe", "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 1024,
               "num_hidden_layers": 16, "num_attention_heads": 16, "num_experts": 64, "num_experts_per_tok": 8}


def test_a_build_over_the_workers_memory_limit_fails_at_once_with_the_admission_error(_isolated_home):
    variant = {"name": "olmoe-1b-7b", "model": "olmoe-1b-7b", "build": {"config": OLMOE_1B_7B, "seed": 0},
               "routing": None, "dtype": "bfloat16", "trust_remote_code": False, "experts_implementation": None}
    outcomes, on_result = collect_outcomes()
    with start_local_workers(1, extra_args=("--memory-limit", "1GB")) as workers:
        with Coordinator(workers.endpoints, heartbeat_s=0.25, timeout_s=30.0) as coord:
            t0 = time.monotonic()
            summary = coord.run([Job("big", {"kind": "describe", "variant": variant})], on_result,
                                deadline_s=RUN_DEADLINE_S)
            took = time.monotonic() - t0
    (_, o), = outcomes["big"]
    # a config build is made in float32 on the CPU before it is loaded in bfloat16: that is what must fit
    estimate = derive.count(OLMOE_1B_7B)["total"] * 4
    assert o["status"] == "failed" and summary.lost == []
    assert o["error"] == (f"out of memory: variant olmoe-1b-7b: needs an estimated {estimate:,} bytes in float32 "
                          f"(building it) "
                          f"but cpu has 1,000,000,000 bytes free (the worker's --memory-limit); not loaded "
                          f"(a smaller dtype or a bigger device would fit it)")
    assert took < 30  # counted on the meta device: no 27 GB float32 build first
    assert not (_isolated_home / "builds" / build_hash(variant["build"])).exists()  # nothing was built


def test_a_sigkilled_local_daemon_is_reported_with_its_signal_within_2_s():
    outcomes, on_result = collect_outcomes()
    lost, fired = [], []
    with start_local_workers(1, env=env(), extra_args=("--heartbeat-s", "0.25")) as workers:
        # a 30 s heartbeat timeout: only the process watch can report this in time
        with Coordinator(workers.endpoints, heartbeat_s=0.25, timeout_s=30.0, exited=workers.exit_reason) as coord:
            coord.on_lost = lambda endpoint, reason: lost.append((time.monotonic(), reason))

            def on_progress(job, done, total, note):
                if not fired:
                    workers.procs[0].send_signal(signal.SIGKILL)
                    fired.append(time.monotonic())

            summary = coord.run([Job("j", probe_spec("test-stall", seconds=20.0))], on_result,
                                on_progress=on_progress, deadline_s=RUN_DEADLINE_S)
    assert fired, "the kill never happened"
    (lost_at, reason), = lost
    assert lost_at - fired[0] < 2.0
    assert reason.startswith("worker 0 killed by SIGKILL while running probe tiny; the kernel's OOM killer? log: ")
    (done_at, o), = outcomes["j"]
    assert done_at - fired[0] < 2.0  # requeued, and with no worker left it fails now, not 30 s later
    assert o["status"] == "failed" and o["error"].startswith("no worker left: all 1 lost (ipc://")
    assert "killed by SIGKILL" in o["error"] and summary.failed == 1


def test_a_local_daemon_that_exits_is_reported_with_its_status():
    with start_local_workers(1, env=env()) as workers:
        workers.procs[0].send_signal(signal.SIGTERM)  # a clean shutdown: status 0
        workers.procs[0].wait(timeout=30)
        what, detail = workers.exit_reason(workers.endpoints[0])
    assert what == "worker 0 exited with status 0" and detail.startswith("log: ")
    assert workers.exit_reason("ipc:///elsewhere") is None
