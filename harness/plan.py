"""Expand a suite into variants and jobs, and give each job its key.

A variant is one build under one routing strategy; a job is one unit of work on one worker.
The job key is a content hash of everything that determines the job's result, so a result
file named by it can be reused by any later run that asks for the same thing.
"""

from __future__ import annotations

from importlib import metadata

import attrs

from moe_schema.hashing import content_hash, model_key

from harness import __version__
from harness.suite import ModelSpec, RoutingSpec, Suite, sweep_points

# Bump when the result layout or the way a job is computed changes: old results stop matching.
RESULT_SCHEMA = 1
_VERSION_PACKAGES = ("torch", "transformers", "lm_eval")


def package_versions() -> dict[str, str]:
    """Versions that determine results, read from package metadata (no import of torch)."""
    out = {"moe-harness": __version__, "result_schema": str(RESULT_SCHEMA)}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))  # pragma: no mutate (equivalent: metadata normalises _ and -)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def variant_name(model: ModelSpec, routing: RoutingSpec | None) -> str:
    if routing is None or (routing.name == "native" and not routing.params):
        return model.name
    return f"{model.name}@{routing.label}"


def variant_spec(model: ModelSpec, routing: RoutingSpec | None) -> dict:
    return {
        "name": variant_name(model, routing),
        "model": model.name,
        "build": model.build,
        "routing": routing.to_dict() if routing is not None else None,
        "dtype": model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "experts_implementation": model.experts_implementation,
        "sweep": dict(model.sweep),
    }


def build_id(variant: dict) -> str:
    """What a worker's model cache is keyed by: the same build loads once for all its routings."""
    return model_key(variant)


@attrs.frozen
class PlannedJob:
    key: str
    spec: dict
    affinity: str
    after: str | None = None  # key of the train job whose checkpoint this job uses

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def variant(self) -> str:
        return self.spec["variant"]["name"]

    def summary(self) -> dict:
        out = {"key": self.key, "kind": self.kind, "variant": self.variant, "model": self.spec["variant"]["model"]}
        if "task" in self.spec:
            out["task"] = self.spec["task"]["name"]
        if "shard" in self.spec:
            out["shard"] = self.spec["shard"]
        if "probe" in self.spec:
            out["probe"] = self.spec["probe"]["name"]
        return out


def job_key(spec: dict, versions: dict | None = None) -> str:
    """The key of a job's result. ``versions``: :func:`package_versions`, read once by a caller that
    keys many jobs (reading package metadata is the slow part of planning)."""
    return content_hash({"spec": spec, "versions": package_versions() if versions is None else versions}, n=24)


def variants(suite: Suite) -> list[dict]:
    """Every model under each of its ``routing`` strategies, then its ``eval_routing`` ones. With a
    ``train:`` section an eval-routing variant is not trained: :func:`train_jobs` points it at the
    checkpoint of the model's first routing (``_eval_of`` marks it until then)."""
    out = []
    for model in suite.models:
        for routing in model.routing or (None,):
            out.append(variant_spec(model, routing))
        for routing in model.eval_routing:
            v = variant_spec(model, routing)
            if suite.train is not None and "config" in model.build:
                v["_eval_of"] = variant_name(model, model.routing[0])
            out.append(v)
    return out


def train_jobs(suite: Suite, vs: list[dict]) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """With a ``train:`` section every config build is trained first, once per seed, identically
    (same corpus, data order, schedule, batch and sequence length). Returns the variants the other
    jobs use (their builds are the trained checkpoints), the train job specs, and for each trained
    variant name its train job spec."""
    if suite.train is None:
        return vs, [], {}
    from moe_schema.train import trained_build  # torch-free

    models = {m.name: m for m in suite.models}
    out, specs, by_variant = [], [], {}
    trained_as: dict[tuple[str, int], dict] = {}  # (variant name, seed) -> its trained variant

    def seeded(name: str, seed: int) -> str:
        return name if len(suite.train_seeds) == 1 else f"{name}#s{seed}"

    for v in vs:
        if "config" not in v["build"]:
            out.append(v)
            continue
        if "_eval_of" in v:  # evaluated on another variant's checkpoint: no training of its own
            base = v["_eval_of"]
            for seed in suite.train_seeds:
                name = seeded(v["name"], seed)
                out.append({**trained_as[(base, seed)], "name": name, "routing": v["routing"]})
                by_variant[name] = by_variant[seeded(base, seed)]
            continue
        model = models[v["model"]]
        for seed in suite.train_seeds:
            name = seeded(v["name"], seed)
            untrained = {**v, "name": name, "build": {**v["build"], "seed": seed}}
            spec = {"kind": "train", "variant": untrained, "train": {**suite.train, **model.train},
                    "corpus": model.corpus or suite.corpus, "seed": seed}
            specs.append(spec)
            trained = {**untrained, "build": trained_build(spec), "train_seed": seed}
            out.append(trained)
            trained_as[(v["name"], seed)] = trained
            by_variant[name] = spec
    return out, specs, by_variant


def task_dict(task) -> dict:
    """The job's task: a local task also carries the digest of its folder (moe_schema.taskfiles),
    so editing any of its files changes the keys of the jobs that use it."""
    out = task.to_dict()
    if task.path is not None:
        from moe_schema.taskfiles import folder_digest  # torch-free

        out["digest"] = folder_digest(task.path)[0]
    return out


def expand(suite: Suite, versions: dict | None = None) -> tuple[list[dict], list[PlannedJob]]:
    """Suite → (variant specs, jobs): train jobs (if any), a describe job per variant, then
    evaluate and probe jobs. ``versions``: what the keys are made under (default: the installed
    :func:`package_versions`)."""
    versions = package_versions() if versions is None else versions
    vs, train_specs, trained_by = train_jobs(suite, variants(suite))  # no "_eval_of" left
    corpus_of = {m.name: m.corpus for m in suite.models if m.corpus is not None}
    specs: list[dict] = list(train_specs)
    for v in vs:
        specs.append({"kind": "describe", "variant": v})
    task_dicts = [task_dict(task) for task in suite.tasks]
    for v in vs:
        for task, td in zip(suite.tasks, task_dicts):
            if task.corpus is not None and v["model"] in corpus_of:  # a sweep point with its own corpus
                td = {**td, "corpus": corpus_of[v["model"]]}
            spec = {"kind": "evaluate", "variant": v, "task": td, "seed": suite.seed, "eval": dict(suite.eval)}
            if task.shards == 1:
                specs.append(spec)
            else:  # one evaluation split over workers; merged exactly after the run (harness/shards.py)
                specs.extend({**spec, "shard": {"index": i, "count": task.shards}} for i in range(task.shards))
    dense = {m.name for m in suite.models if m.moe is False}
    for v in vs:
        for probe in suite.probes:
            if probe.name == "routing" and v["model"] in dense:
                continue  # a dense build has no router to probe
            specs.append({"kind": "probe", "variant": v, "probe": probe.to_dict(), "seed": suite.seed})
    train_keys = {id(t): job_key(t, versions) for t in train_specs}
    jobs = []
    for s in specs:
        trained_from = trained_by.get(s["variant"]["name"]) if s["kind"] != "train" else None
        after = train_keys[id(trained_from)] if trained_from is not None else None
        jobs.append(PlannedJob(job_key(s, versions), s, build_id(s["variant"]), after))
    return vs, jobs


def shard_groups(jobs: list[PlannedJob], versions: dict | None = None) -> dict[str, list[PlannedJob]]:
    """Sharded evaluate jobs grouped by the key their merged result takes (the unsplit spec's),
    made under the same ``versions`` as :func:`expand`'s."""
    groups: dict[str, list[PlannedJob]] = {}
    versions = package_versions() if versions is None else versions
    for j in jobs:
        if "shard" in j.spec:
            whole = {k: v for k, v in j.spec.items() if k != "shard"}
            groups.setdefault(job_key(whole, versions), []).append(j)
    return groups


def unshippable_tasks(suite: Suite) -> list[str]:
    """One line per local task whose folder is over the size that travels with its jobs
    (moe_schema.taskfiles.SHIP_LIMIT): a worker on another host reads such a folder at its
    path, so without a shared filesystem its jobs would fail there, one by one."""
    from moe_schema.taskfiles import SHIP_LIMIT, folder_bytes  # torch-free

    out = []
    for i, task in enumerate(suite.tasks):
        if task.path is not None and (size := folder_bytes(task.path)) > SHIP_LIMIT:
            out.append(f"tasks[{i}] ({task.path}): its folder holds {_size(size)}, over the "
                       f"{_size(SHIP_LIMIT)} that travel with a job")
    return out


def _size(n: int) -> str:
    value, unit = (n / 2**20, "MiB") if n >= 2**20 else (n / 2**10, "KiB")
    return f"{value:.{0 if value == int(value) else 1}f} {unit}"


def plan_document(suite: Suite, vs: list[dict], jobs: list[PlannedJob], pairs: list | None = None) -> dict:
    return {
        "suite": suite.name,
        "versions": package_versions(),
        "pairing": {"tolerance": suite.pairing.tolerance},
        "sweep": {"settings": dict(suite.sweep), "points": sweep_points(suite.sweep) if suite.sweep else []},
        "variants": vs,
        "jobs": [j.summary() for j in jobs],
        "pairs": pairs or [],
    }
