"""Shared fixtures. Costly ones (daemons, built checkpoints, lm-eval's task index) are session-scoped."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # the fused Triton experts kernels run in Triton's interpreter
        os.environ["TRITON_INTERPRET"] = "1"  # (read when workers.experts.triton_moe is first imported)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Builds and the shared result cache go to a per-session folder, never the user's ~/.cache."""
    if "MOE_HARNESS_HOME" not in os.environ or os.environ.get("MOE_HARNESS_TEST_HOME_SET") != "1":
        home = tmp_path_factory.mktemp("moe_harness_home")
        os.environ["MOE_HARNESS_HOME"] = str(home)
        os.environ["MOE_HARNESS_TEST_HOME_SET"] = "1"
    yield Path(os.environ["MOE_HARNESS_HOME"])


@pytest.fixture
def endpoints(tmp_path):
    """Three ipc endpoints in the test's own folder, for scripted peers (tests/scripted_peer.py)."""
    return [f"ipc://{tmp_path}/w{i}.sock" for i in range(3)]


@pytest.fixture
def peers():
    """The test appends the scripted Peers it starts; they are stopped after it."""
    started = []
    yield started
    for p in started:
        p.stop()


@contextlib.contextmanager
def _torch_on_one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (stable timings, no oversubscription), then as before.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with _torch_on_one_thread():
        yield


@pytest.fixture(scope="session")
def train_in_process():
    """``train(job, home)``: a train job run by workers.training.job in this process, on one torch
    thread (then as before), on a CPU host whose harness home is ``home``; its result."""
    import threading

    from workers.host import Host
    from workers.training.job import run

    def train(job: dict, home: Path) -> dict:
        with _torch_on_one_thread():
            return run(job, Host("cpu", home=home), lambda *a: None, threading.Event())

    return train


# ---- evaluation (tests/test_evaluation.py, tests/test_eval_parity.py) -------------------------
EVAL_TINY_CONFIG = {
    "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
}


@pytest.fixture(scope="session")
def eval_tiny_checkpoint(_isolated_home):
    """A tiny random Llama with the byte tokenizer, saved by workers.builds (128-token window)."""
    from workers.builds.materialize import materialize

    return Path(materialize({"config": dict(EVAL_TINY_CONFIG), "seed": 0}))


@pytest.fixture(scope="session")
def eval_tiny_model(eval_tiny_checkpoint):
    """``(model, tokenizer)`` loaded once in float32 from eval_tiny_checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(eval_tiny_checkpoint, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(eval_tiny_checkpoint)


@pytest.fixture(scope="session")
def heldout_matches_hf():
    """``check(train_result, docs)``: a trained knowledge corpus's longtail_heldout_seen / _unseen,
    each of ``docs`` documents, through the evaluate job and through lm-eval's ``hf`` backend on the
    same saved checkpoint; asserts every document's bits per byte (the same bytes counted, the
    log-likelihood within 1e-4) and each task's agree; returns the evaluate job's result."""
    import threading
    from types import SimpleNamespace

    def check(train_result: dict, docs: int) -> dict:
        import lm_eval
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from workers.evaluation.job import _samples, run, task_manager

        checkpoint, tasks = train_result["build"]["checkpoint"], train_result["corpus"]["tasks"]
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(checkpoint)
        loaded = SimpleNamespace(model=model, tokenizer=tok, path=None, variant=None, routing_session=None)
        ref = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": checkpoint, "dtype": "float32", "device": "cpu"},
            tasks=["longtail_heldout_seen", "longtail_heldout_unseen"],
            task_manager=task_manager(str(Path(tasks["longtail_heldout"]).parent)),
            batch_size=4, log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
            torch_random_seed=0, fewshot_random_seed=0)
        ours = run({"kind": "evaluate", "seed": 0, "eval": {"max_batch_tokens": 1024, "bootstrap_iters": 0},
                    "task": {"name": "longtail_heldout", "path": tasks["longtail_heldout"], "limit": None,
                             "num_fewshot": 0}}, loaded, lambda *a: None, threading.Event())
        for name in ("longtail_heldout_seen", "longtail_heldout_unseen"):
            want, got = _samples(ref["samples"][name]), ours["samples"][name]
            assert len(got) == len(want) == docs
            for a, b in zip(got, want):
                assert a["bits_per_byte"][1] == b["bits_per_byte"][1]  # the same bytes counted
                assert abs(a["bits_per_byte"][0] - b["bits_per_byte"][0]) <= 1e-4, (name, a["doc_id"])
            assert abs(ours["metrics"][name]["bits_per_byte"] - ref["results"][name]["bits_per_byte,none"]) <= 1e-4, name
        return ours

    return check


# ---- report fixtures (harness/report) --------------------------------------------------------
REPORT_FIXTURE = REPO / "tests" / "data" / "run_fixture"


@pytest.fixture(scope="session")
def report_fixture_run(tmp_path_factory):
    """A copy of tests/data/run_fixture (synthetic run: MoE ×2 routings, 2 dense twins) with its report written."""
    import shutil

    from harness.report import write_report

    run = tmp_path_factory.mktemp("report_run") / "fixture-smoke"
    shutil.copytree(REPORT_FIXTURE, run)
    write_report(run)
    return run


# ---- worker daemons (tests/test_daemon.py, test_coordinator.py, test_fuzz.py) ---------------
@pytest.fixture(scope="session")
def daemon_pool(_isolated_home):
    """Two healthy local daemons (harness.local) serving tests/fault_jobs.py's test-* probes
    besides the real jobs. Tests that kill or freeze daemons start their own."""
    import fault_jobs
    from harness.local import start_local_workers

    with start_local_workers(2, env=fault_jobs.env(), extra_args=("--heartbeat-s", "0.25")) as workers:
        yield workers


@pytest.fixture(scope="session")
def other_user():
    """A second local user (`nobody` via runuser, as root) for the trust tests; skips saying why not."""
    from other_user import other_user as make

    user = make()
    if isinstance(user, str):
        pytest.skip(user)
    yield user
    user.close()


# ---- the smoke suite, run once as the README says (tests/test_e2e.py, test_regression.py) ---
@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, _isolated_home) -> Path:
    """`harness run suites/smoke.yaml`, starting and stopping its own local daemons."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "smoke.yaml"),
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def pytest_collection_modifyitems(config, items):
    """Mark the tests mutation testing runs (tests/mutation_selection.py says which and why)."""
    from mutation_selection import MUTANT_TIMEOUT_S, selected

    under_mutmut = "MUTANT_UNDER_TEST" in os.environ  # mutmut sets it in every process it runs tests in
    for item in items:
        if selected(item.path.name, item.name):
            item.add_marker(pytest.mark.mutation_core)
            if under_mutmut:  # a mutant that makes a run hang fails in seconds, not at the 600 s default
                item.add_marker(pytest.mark.timeout(MUTANT_TIMEOUT_S))
