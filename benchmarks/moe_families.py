"""Which MoE families of the installed transformers the harness describes, routes and probes.

    python benchmarks/moe_families.py [FAMILY ...]

For every causal-LM family whose modeling file defines an experts class (or those named), a tiny
config is built (tests/families.py) and checked in its own subprocess (a family that crashes the
interpreter is reported, not fatal): describe (the safetensors-header count equals count_params),
blocks (a router beside the experts), route (topk k=1 over a forward pass), probe (the roofline's
shape adds up). Prints one line per family and the totals. A tiny config still over 20M parameters
(a size key the survey does not shrink) is skipped on the meta device, never allocated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("describe", "blocks", "route", "probe")
_CHILD = """
import json, sys, warnings
warnings.filterwarnings("ignore")
sys.path[:0] = [{repo!r}, {tests!r}]
import transformers; transformers.logging.set_verbosity_error()
import torch; torch.set_num_threads(1)
from families import survey
print("RESULT " + json.dumps(survey({family!r})))
"""


def check(family: str) -> dict:
    code = _CHILD.format(repo=str(REPO), tests=str(REPO / "tests"), family=family)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        return {"build": "timed out after 300 s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return {"build": f"the check crashed (exit {proc.returncode}): {tail[:100]}"}


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from families import candidate_families

    families = argv or candidate_families()
    full, moe = 0, 0
    for family in families:
        result = check(family)
        if "build" in result:
            print(f"{family:20} -      {result['build']}")
            continue
        moe += 1
        ok = all(result.get(c) is True for c in CHECKS)
        full += ok
        marks = " ".join(f"{c}" if result.get(c) is True else f"no-{c}" for c in CHECKS if c in result)
        why = next((f"{c}: {result[c]}" for c in CHECKS if c in result and result[c] is not True), "")
        print(f"{family:20} {'ok' if ok else 'PART':6} {marks}  {why}")
    print(f"\n{full} of {moe} MoE families described, routed and probed ({len(families)} candidates)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
