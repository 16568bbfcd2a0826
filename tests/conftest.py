"""Shared fixtures. Costly ones (daemons, built checkpoints, lm-eval's task index) are session-scoped."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (stable timings, no oversubscription), then as before.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
