"""`harness launch slurm`: the sbatch script's text and the checks made before it is written.
(The script run for real on a real Slurm: tests/test_slurm.py.)"""

from __future__ import annotations

import pytest

from harness import launch
from harness.cli import main as harness
from harness.launch import SlurmOptions, slurm_script


@pytest.fixture
def keys(tmp_path):
    assert harness(["keys", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


@pytest.fixture
def no_cluster(monkeypatch):
    """As on a machine without slurm's commands: nothing to ask about CPUs or KillWait."""
    monkeypatch.setattr(launch, "node_cpus", lambda partition: None)
    monkeypatch.setattr(launch, "slurm_kill_wait", lambda: None)


def sbatch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def test_gpu_script(keys, tmp_path):
    text = slurm_script(SlurmOptions(out=tmp_path / "w", nodes=2, gpus_per_node=4, cpus_per_daemon=6, keys=keys,
                                     partition="gpu", harness="/opt/py/bin/harness", sbatch_args=("--qos=high",)))
    assert sbatch_lines(text) == [
        "#SBATCH --job-name=moe-harness-workers", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=6", "#SBATCH --time=04:00:00",
        "#SBATCH --signal=TERM@120", f"#SBATCH --output={tmp_path}/w/slurm-%j.out", "#SBATCH --partition=gpu",
        "#SBATCH --qos=high"]
    # srun asks for the same CPUs (since slurm 22.05 it no longer inherits --cpus-per-task), one GPU each
    assert "srun --ntasks-per-node=4 --cpus-per-task=6 --gpus-per-task=1 " in text
    assert "export HARNESS=/opt/py/bin/harness" in text
    daemon = ('exec "$HARNESS" worker --device cuda:0 --bind "tcp://0.0.0.0:*" --threads "$SLURM_CPUS_PER_TASK" '
              f"--grace-s 20 --keys {keys}/server")
    assert daemon in text and "-m workers.daemon" not in text and "--insecure" not in text
    assert '--output="$OUT/daemon-%j-%N-%t.log"' in text  # one log per daemon: job, node, task
    # the job (daemons and collector) gets the server folder only: no client secret on a worker host
    assert f"--expect 8 --timeout 600 --pid \"$SRUN\" --keys {keys}/server" in text
    assert f"{keys}/client" not in text and f"--keys {keys} " not in text


def test_cpu_script_asks_for_no_gpu(tmp_path):
    text = slurm_script(SlurmOptions(out=tmp_path / "w", device="cpu", gpus_per_node=0, daemons_per_node=2,
                                     cpus_per_daemon=1, bind_host="127.0.0.1"))
    assert "--gpus" not in text and "cuda" not in text  # sbatch rejects a gres request a CPU cluster lacks
    assert "#SBATCH --ntasks-per-node=2" in text and "#SBATCH --cpus-per-task=1" in text
    assert '--device cpu --bind "tcp://127.0.0.1:*"' in text and "--expect 2 " in text


@pytest.mark.parametrize("args, device, gpus, cpus", [
    (["--device", "cpu"], "cpu", 0, 1),
    (["--gpus-per-node", "0"], "cpu", 0, 1),
    ([], "cuda", 1, 8),
    (["--gpus-per-node", "4", "--cpus-per-gpu", "2"], "cuda", 4, 2),
])
def test_device_follows_the_options(tmp_path, args, device, gpus, cpus):
    parser = __import__("argparse").ArgumentParser()
    launch.add_arguments(parser)
    opts = launch.options(parser.parse_args(["slurm", "--out", str(tmp_path), "--insecure", *args]))
    assert (opts.device, opts.gpus_per_node, opts.cpus_per_daemon) == (device, gpus, cpus)


@pytest.mark.parametrize("args, text", [
    ([], "--keys DIR is required"),
    (["--keys", "/nonexistent"], "--keys /nonexistent: no server.key_secret"),
    (["--insecure", "--nodes", "0"], "--nodes 0"),
    (["--insecure", "--cpus-per-gpu", "0"], "--cpus-per-daemon 0: must be >= 1"),
    (["--insecure", "--device", "cpu", "--daemons-per-node", "0"], "--daemons-per-node 0"),
    (["--insecure", "--device", "cpu", "--gpus-per-node", "2"], "--device cpu with --gpus-per-node 2"),
    (["--insecure", "--grace-s", "200"], "--grace-s 200: must be > 0 and below --warn-s 120"),
])
def test_bad_options_are_named(tmp_path, capsys, no_cluster, args, text):
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), *args]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_a_loopback_cluster_needs_keys_too(tmp_path, keys, no_cluster, capsys):
    """Finding 1 of issue 25: `--bind-host 127.0.0.1` without keys started daemons any local user could
    send jobs to. Now refused in one line, nothing written; with keys, the daemons get the server folder."""
    out = tmp_path / "w"
    assert harness(["launch", "slurm", "--out", str(out), "--device", "cpu", "--bind-host", "127.0.0.1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("harness launch: --keys DIR is required: every tcp daemon authenticates its clients, "
                           "loopback included") and not out.exists()
    assert harness(["launch", "slurm", "--out", str(out), "--device", "cpu", "--bind-host", "127.0.0.1",
                    "--keys", str(keys)]) == 0
    text = (out / "workers.sbatch").read_text()
    assert f'--bind "tcp://127.0.0.1:*"' in text and f"--keys {keys}/server" in text and "--insecure" not in text
    assert f"--keys {keys}" in capsys.readouterr().out  # what `harness run` takes: DIR (it picks DIR/client)


def test_loose_keys_are_refused_before_anything_is_written(tmp_path, keys, no_cluster, capsys):
    (keys / "server" / "server.key_secret").chmod(0o644)
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), "--keys", str(keys)]) == 2
    assert "server.key_secret: a secret readable by others (mode 0644)" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_cpus_beyond_the_largest_node_are_refused(tmp_path, capsys, monkeypatch):
    """The job would pend forever; say so and what fits, instead of submitting it."""
    monkeypatch.setattr(launch, "node_cpus", lambda partition: 2)
    monkeypatch.setattr(launch, "slurm_kill_wait", lambda: 30)
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), "--device", "cpu", "--insecure",
                    "--cpus-per-daemon", "2", "--daemons-per-node", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("harness launch: --cpus-per-daemon 2 x 2 daemon(s) per node = 4 CPUs, but the largest node of "
                   "this cluster has 2: the job would pend forever; pass --cpus-per-daemon 1")


def test_grace_must_be_below_kill_wait(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(launch, "node_cpus", lambda partition: 64)
    monkeypatch.setattr(launch, "slurm_kill_wait", lambda: 15)
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), "--insecure", "--grace-s", "20"]) == 2
    assert "--grace-s 20: must be below slurm's KillWait (15 s)" in capsys.readouterr().err


def test_an_out_folder_of_a_running_job_is_refused(tmp_path, capsys, no_cluster, monkeypatch):
    """A second job on the same --out would replace the first's endpoints file."""
    from harness import endpoints

    out = tmp_path / "w"
    out.mkdir()
    endpoints.write(out / "endpoints.txt", "41", ["tcp://node1:40000"], 1)
    monkeypatch.setattr(endpoints, "slurm_job_state", lambda job: "RUNNING" if job == "41" else "")
    assert harness(["launch", "slurm", "--out", str(out), "--insecure"]) == 2
    assert "belongs to running slurm job 41; give this job its own --out" in capsys.readouterr().err
    monkeypatch.setattr(endpoints, "slurm_job_state", lambda job: "")  # job 41 gone: the folder is free
    assert harness(["launch", "slurm", "--out", str(out), "--insecure"]) == 0


def test_submit_without_sbatch_says_so(keys, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch (nor sinfo, scontrol) here
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), "--keys", str(keys), "--submit"]) == 1
    assert "sbatch is not on PATH" in capsys.readouterr().err
