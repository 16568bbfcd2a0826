"""The ``train`` job spec, checked with defaults filled in, and its deterministic checkpoint path.

Torch-free, so the planner can import it. A train job::

    {"kind": "train",
     "variant": {... a variant spec; its build a {"config": ...} (or a checkpoint to continue) ...},
     "corpus": {... moe_schema.corpus ...},
     "train": {"tokens": 1_000_000,      # token budget (steps = ceil(tokens / (batch_size * seq_len)))
               "batch_size": 16, "seq_len": 128,
               "lr": 3e-3, "min_lr_ratio": 0.1, "warmup_steps": 20,   # linear warm-up, cosine to lr*ratio
               "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0,
               "aux_loss_coef": 0.01, "z_loss_coef": 0.001,          # MoE builds only
               "checkpoint_every": 100, "log_every": 10,             # steps
               "heldout_points": 8, "heldout_docs": 32,  # held-out loss at 8 log-spaced token counts on
                                                          # 32 held-out bios of each kind (0 points: off)
               "autocast": "bfloat16"},                               # on CUDA; None: full fp32
     "seed": 0}                           # data order; the weights' seed is the build's own

The trained checkpoint lands in ``$MOE_HARNESS_HOME/trained/<train_key(job)>`` on the worker that
trained it: ``train_key`` hashes what determines the weights (build, routing, corpus, train settings,
seed), not the variant's name, so the planner can point later jobs at ``trained_build(job)`` =
``{"trained": train_key}``, which each worker finds under its own home (``trained_path``). Workers
list the keys they hold (``held_trained``), and the coordinator sends a job needing one to a worker
that has it: no shared filesystem is needed.
"""

from __future__ import annotations

from pathlib import Path

from moe_schema.check import SchemaError, fits, known_keys, short, value_problem
from moe_schema.hashing import content_hash
from moe_schema.corpus import CorpusError, check_corpus
from moe_schema.home import harness_home
from moe_schema.knowledge import FORMAT as CORPUS_FORMAT

TRAIN_DEFAULTS = {
    "tokens": 1_000_000, "batch_size": 16, "seq_len": 128, "lr": 3e-3, "min_lr_ratio": 0.1,
    "warmup_steps": 20, "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0,
    "aux_loss_coef": 0.01, "z_loss_coef": 0.001, "checkpoint_every": 100, "log_every": 10,
    "autocast": "bfloat16", "heldout_points": 8, "heldout_docs": 32,
}
_INTS = {"tokens": 1, "batch_size": 1, "seq_len": 2, "warmup_steps": 0, "checkpoint_every": 1, "log_every": 1,
         "heldout_points": 0, "heldout_docs": 1}
_FLOATS = ("lr", "min_lr_ratio", "weight_decay", "grad_clip", "aux_loss_coef", "z_loss_coef")


class TrainSpecError(SchemaError):
    """A bad train job; the message names the field (``job.train.lr: ...``)."""


def check_train(train, where: str = "job.train") -> dict:
    """Validate the ``train`` map; return a copy with defaults filled in."""
    if not isinstance(train, dict):
        raise TrainSpecError(f"{where}: expected a map, got {type(train).__name__}")
    known_keys(where, train, TRAIN_DEFAULTS, TrainSpecError)
    out = {**TRAIN_DEFAULTS, **train}
    for key, low in _INTS.items():
        v = out[key]
        if not fits(int, v) or v < low:
            raise TrainSpecError(f"{where}.{key}", f"expected {value_problem(v) or f'an int >= {low}'}, got {short(v)}")
    for key in _FLOATS:
        v = out[key]
        if not fits(float, v) or v < 0:
            raise TrainSpecError(f"{where}.{key}", f"expected {value_problem(v) or 'a number >= 0'}, got {short(v)}")
    if out["lr"] <= 0 or out["min_lr_ratio"] > 1:
        raise TrainSpecError(f"{where}: need lr > 0 and 0 <= min_lr_ratio <= 1, got lr={out['lr']!r} "
                             f"min_lr_ratio={out['min_lr_ratio']!r}")
    b = out["betas"]
    if not (isinstance(b, list) and len(b) == 2 and all(fits(float, x) and 0 <= x < 1 for x in b)):
        raise TrainSpecError(f"{where}.betas", f"expected two numbers in [0, 1), got {short(b)}")
    if out["autocast"] not in ("bfloat16", "float16", None):
        raise TrainSpecError(f"{where}.autocast", f"expected bfloat16, float16 or null, got {short(out['autocast'])}")
    return out


def check_train_job(job: dict) -> tuple[dict, dict, int]:
    """``(train, corpus, seed)`` of a train job, checked (the variant is checked by workers.jobs)."""
    train = check_train(job.get("train", {}))
    if "corpus" not in job:
        raise TrainSpecError("job.corpus: a train job needs a corpus")
    try:
        corpus = check_corpus(job["corpus"])
    except CorpusError as exc:
        raise TrainSpecError(str(exc)) from None
    seed = job.get("seed", 0)
    if not fits(int, seed):
        raise TrainSpecError("job.seed", f"expected {value_problem(seed) or 'an int'}, got {short(seed)}")
    return train, corpus, seed


def train_key(job: dict) -> str:
    """16 hex digits naming the trained weights: everything that determines them, nothing else."""
    train, corpus, seed = check_train_job(job)
    v = job["variant"]
    what = {"build": v["build"], "routing": v.get("routing"), "experts_implementation":
            v.get("experts_implementation"), "corpus": corpus, "corpus_format": CORPUS_FORMAT, "train": train,
            "seed": seed}
    return content_hash(what)


def trained_dir(job: dict, home=None) -> Path:
    """The finished checkpoint directory of a train job."""
    return trained_path(train_key(job), home)


def trained_path(key: str, home=None) -> Path:
    """Where this machine keeps (or would keep) the checkpoint trained under ``key``."""
    return harness_home(home) / "trained" / key


def held_trained(home=None) -> list[str]:
    """The train keys whose finished checkpoints this machine holds."""
    root = harness_home(home) / "trained"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "config.json").is_file())


def resume_dir(job: dict, home=None) -> Path:
    """Local resume state of an unfinished train job (never sent over the wire)."""
    return harness_home(home) / "trained" / f".resume-{train_key(job)}"


def trained_build(job: dict) -> dict:
    """The build later jobs use for this train job's result (found under each worker's own home)."""
    return {"trained": train_key(job)}
