"""Expand a suite into variants and jobs, and give each job its key.

A variant is one build under one routing strategy; a job is one unit of work on one worker.
The job key is a content hash of everything that determines the job's result, so a result
file named by it can be reused by any later run that asks for the same thing.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path

import attrs

from moe_schema import engines
from moe_schema.engines import engine_name, is_default
from moe_schema.engines import label as engine_label
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


def variant_name(model: ModelSpec, routing: RoutingSpec | None, engine: dict | None = None) -> str:
    """``model@routing[engine]``: ``@routing`` unless native, ``[engine]`` unless the default engine
    (moe_schema.engines.label), so its variants keep the names they always had."""
    tail = engine_label(engine) if engine is not None else ""
    if routing is None or (routing.name == "native" and not routing.params):
        return model.name + tail
    return f"{model.name}@{routing.label}{tail}"


def variant_spec(model: ModelSpec, routing: RoutingSpec | None, engine: dict | None = None) -> dict:
    out = {
        "name": variant_name(model, routing, engine),
        "model": model.name,
        "build": model.build,
        "routing": routing.to_dict() if routing is not None else None,
        "dtype": model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "experts_implementation": model.experts_implementation,
        "sweep": dict(model.sweep),
    }
    if engine is not None and not is_default(engine["name"]):  # absent: the default engine (keys unchanged)
        out["engine"] = engine
    return out


@functools.lru_cache(maxsize=None)
def engine_version(name: str) -> str:
    """An engine's installed version in this Python (package metadata of the distributions its
    spec names, no import), or "absent"."""
    for dist in engines.get(name).distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


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
    keys many jobs (reading package metadata is the slow part of planning). A job on an engine other
    than the default is keyed by that engine's version too (its variant's ``engine`` already
    parts it from the same build's jobs on the default engine)."""
    versions = package_versions() if versions is None else versions
    engine = engine_name(spec.get("variant") or {})
    if not is_default(engine) and engine not in versions:
        versions = {**versions, engine: engine_version(engine)}
    return content_hash({"spec": spec, "versions": versions}, n=24)


def variants(suite: Suite) -> list[dict]:
    """Every model under each of its ``routing`` strategies, then its ``eval_routing`` ones. With a
    ``train:`` section an eval-routing variant is not trained: :func:`train_jobs` points it at the
    checkpoint of the model's first routing (``_eval_of`` marks it until then)."""
    out = []
    for model in suite.models:
        for routing in model.routing or (None,):
            out.extend(variant_spec(model, routing, engine) for engine in model.engines)
        for routing in model.eval_routing:
            for engine in model.engines:
                v = variant_spec(model, routing, engine)
                if suite.train is not None and "config" in model.build:
                    v["_eval_of"] = variant_name(model, model.routing[0], engine)
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
    train_of: dict[str, dict] = {}  # train variant name (transformers) -> its train job, one per build

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
        # training runs on transformers: a build evaluated on several engines is trained once
        plain = {k: x for k, x in v.items() if k != "engine"}
        plain["name"] = v["name"].removesuffix(engine_label(v["engine"])) if "engine" in v else v["name"]
        for seed in suite.train_seeds:
            name = seeded(v["name"], seed)
            untrained = {**plain, "name": seeded(plain["name"], seed), "build": {**v["build"], "seed": seed}}
            new = {"kind": "train", "variant": untrained, "train": {**suite.train, **model.train},
                   "corpus": model.corpus or suite.corpus, "seed": seed}
            spec = train_of.setdefault(untrained["name"], new)
            if spec is new:
                specs.append(spec)
            trained = {**v, "name": name, "build": trained_build(spec), "train_seed": seed}
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


def local_engine_refusals(vs: list[dict], device: str, installed=None) -> list[str]:
    """One line per variant local daemons (this Python, on ``device``) cannot host: its engine is
    not installed here, or the engine refuses the device (moe_schema.engines.refusal: tensor
    parallelism over one CPU). Remote workers say what they host in their hello; the coordinator
    routes by it. ``installed(name)``: is that engine importable here (default: package metadata
    or an importable module, no import)."""
    from importlib.util import find_spec

    if installed is None:
        def installed(name):
            return engine_version(name) != "absent" or find_spec(engines.get(name).library) is not None
    out = []
    for v in vs:
        engine = v.get("engine")
        if engine is None:  # the default engine: the harness's own
            continue
        if not installed(engine["name"]):
            out.append(f"{v['name']}: engine {engine['name']} is not installed in this Python, where the local "
                       f"daemons run ({engines.get(engine['name']).install}), and no --workers name one that has it")
        elif refused := engines.refusal(engine, config=None, dtype=v["dtype"], device=device):
            out.append(f"{v['name']}: {refused.why}")
    return out


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


#: a local task with more documents than this and no ``limit`` is worth a warning at plan time
LARGE_TASK_DOCS = 10_000


def large_unlimited_tasks(suite: Suite) -> list[str]:
    """One line per local task with more than ``LARGE_TASK_DOCS`` documents and no ``limit``: lm-eval
    builds every request before the first forward (minutes for 10^6 documents), so say it before."""
    from harness import yamlfile
    from moe_schema.taskfiles import count_documents  # torch-free

    class _Loader(yamlfile.BoundedLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    out = []
    for i, task in enumerate(suite.tasks):
        if task.path is None or task.limit is not None:
            continue
        try:
            config = yamlfile.load_file(task.path, _Loader)
        except Exception:  # read once already by the suite parser; a warning is never an error
            continue
        n = count_documents(config, Path(task.path).parent) if isinstance(config, dict) else None
        if n is not None and n > LARGE_TASK_DOCS:
            out.append(f"tasks[{i}] ({task.name}): {n:,} documents and no limit; every request is built "
                       f"before the first forward: set tasks[{i}].limit to evaluate fewer")
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


def untrained(describe: list[PlannedJob], jobs: list[PlannedJob]) -> list[PlannedJob]:
    """The describe jobs, those of trained variants pointed at the build their train job starts from."""
    start = {j.key: j.spec["variant"]["build"] for j in jobs if j.kind == "train"}  # by train job key:
    out = []  # an eval_routing variant is described on the build its checkpoint's train job starts from
    for j in describe:
        if j.after is None:
            out.append(j)
            continue
        variant = {**j.spec["variant"], "build": start[j.after]}
        spec = {**j.spec, "variant": variant}
        out.append(PlannedJob(job_key(spec), spec, build_id(variant)))
    return out
