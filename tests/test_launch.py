"""`harness launch slurm`: the sbatch script's text, and running it with stand-in slurm commands."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.cli import main as harness
from harness.launch import SlurmOptions, slurm_script

FAKE_SRUN = """#!/bin/bash
# stand-in srun: drop the options, run the command once per local task, as slurm would per node
while [[ "$1" == --* ]]; do shift; done
for ((id = 0; id < NTASKS; id++)); do SLURM_LOCALID=$id "$@"; done
"""


@pytest.fixture
def keys(tmp_path):
    assert harness(["keys", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


def test_script_text(keys, tmp_path):
    text = slurm_script(SlurmOptions(out=tmp_path / "w", nodes=2, gpus_per_node=4, port=6000, keys=keys,
                                     partition="gpu", python="/opt/py/bin/python",
                                     sbatch_args=("--qos=high",)))
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --partition=gpu", "#SBATCH --qos=high", "export MOE_HARNESS_PORT=6000",
                 f"#SBATCH --output={tmp_path}/w/slurm-%j.out"):
        assert line in text.splitlines()
    assert "--account" not in text and "--insecure" not in text
    assert f"--keys {keys}" in text and "/opt/py/bin/python -m workers.daemon --device cuda:0" in text


def test_script_runs_and_records_one_endpoint_per_gpu(keys, tmp_path, capsys):
    out = tmp_path / "w"
    assert harness(["launch", "slurm", "--out", str(out), "--nodes", "2", "--gpus-per-node", "3",
                    "--port", "7000", "--keys", str(keys), "--python", "echo"]) == 0
    assert f"--workers @{out / 'endpoints.txt'}" in capsys.readouterr().out
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/bash\nprintf 'gpu-a\\ngpu-b\\n'\n")
    (bin_dir / "srun").write_text(FAKE_SRUN)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="42",
               SLURM_JOB_NODELIST="gpu-[a-b]", NTASKS="3")
    done = subprocess.run(["bash", str(out / "workers.sbatch")], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert (out / "endpoints.txt").read_text().split() == [
        f"tcp://gpu-{n}:{7000 + i}" for n in "ab" for i in range(3)]
    started = done.stdout.splitlines()  # `echo` stood in for python: the daemons' command lines
    assert started == [f"-m workers.daemon --device cuda:0 --bind tcp://0.0.0.0:{7000 + i} --keys {keys}"
                       for i in range(3)]


@pytest.mark.parametrize("args, text", [
    ([], "--keys DIR is required"),
    (["--keys", "/nonexistent"], "--keys /nonexistent: no server.key_secret"),
    (["--insecure", "--port", "80"], "--port 80"),
    (["--insecure", "--nodes", "0"], "--nodes 0"),
])
def test_bad_options_are_named(tmp_path, capsys, args, text):
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), *args]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1


def test_submit_without_sbatch_says_so(keys, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert harness(["launch", "slurm", "--out", str(tmp_path / "w"), "--keys", str(keys), "--submit"]) == 1
    assert "sbatch is not on PATH" in capsys.readouterr().err
