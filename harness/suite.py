"""Suite files: YAML → validated attrs classes.

Every error is a :class:`SuiteError` naming the YAML path of the offending value
(``models[2].config.num_experts: expected int, got 'many'``); the CLI prints it on one line
and exits with code 2. Plugin names and parameters (routing strategies, probes) are checked
here against the torch-free plugin registries, so a typo fails before any worker starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import yaml

from harness import yamlfile
from moe_schema.check import SchemaError, expect, got, known_keys, unknown
from moe_schema.devices import check_prices
from moe_schema.engines import DEFAULT, engine_spec
from moe_schema.families import FAMILIES, check_config
from moe_schema.variant import SUITE_DTYPES
from moe_schema.task import check_eval_options, check_limit, check_num_fewshot

DTYPES = SUITE_DTYPES
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
NAME_MAX = 100  # suite and model names become folder and file names (255 bytes at most on most filesystems)


#: a suite's errors are the shared schema errors (moe_schema.check), at YAML paths
SuiteError = SchemaError


# ---------------------------------------------------------------- the suite's classes


@attrs.frozen
class RoutingSpec:
    name: str
    params: dict = attrs.field(factory=dict)
    label: str = "native"  # shown in variant names: topk(k=2)
    # the checked config object (moe_schema.routing), parsed once when the suite is read
    config: object = attrs.field(default=None, eq=False, repr=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "params": dict(self.params)}


@attrs.frozen
class ModelSpec:
    name: str
    build: dict  # {"checkpoint": str} or {"config": {...}, "seed": int}
    family: str | None  # model_type where known without loading (config builds, local checkpoints)
    moe: bool | None  # None: not known until a worker describes it (hub checkpoints)
    routing: tuple[RoutingSpec, ...]
    dtype: str
    trust_remote_code: bool = False
    experts_implementation: str | None = None
    derive: dict | None = None  # {from, match, ...}: how this build's config was derived
    train: dict = attrs.field(factory=dict)  # per-model overrides of the suite's train settings
    # Strategies applied only at evaluation: on a trained build, to the checkpoint trained under the
    # model's first `routing` (claim 5: the same weights, several routers); untrained, like `routing`.
    eval_routing: tuple[RoutingSpec, ...] = ()
    sweep: dict = attrs.field(factory=dict)  # {setting: value} of this copy's sweep point ({} without)
    corpus: dict | None = None  # the point's corpus where the sweep changes it; None: the suite's
    # the engines the build is hosted in (moe_schema.engines specs); each is its own variant
    engines: tuple[dict, ...] = attrs.field(factory=lambda: (engine_spec(DEFAULT),))


@attrs.frozen
class TaskSpec:
    name: str
    path: str | None  # absolute path of a local lm-eval task YAML, or None for a registered task
    limit: int | float | None = None
    num_fewshot: int | None = None
    shards: int = 1  # split one evaluation over this many workers holding the same variant
    corpus: dict | None = None  # a task generated from the suite's corpus (the worker resolves its path)

    def to_dict(self) -> dict:
        out = {"name": self.name, "path": self.path, "limit": self.limit, "num_fewshot": self.num_fewshot}
        if self.corpus is not None:
            out["corpus"] = self.corpus
        return out


@attrs.frozen
class ProbeSpec:
    name: str
    params: dict = attrs.field(factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "params": dict(self.params)}


@attrs.frozen
class Pairing:
    tolerance: float = 0.10


@attrs.frozen
class Suite:
    name: str
    path: Path | None
    models: tuple[ModelSpec, ...]
    tasks: tuple[TaskSpec, ...]
    probes: tuple[ProbeSpec, ...] = ()
    workers: tuple[str, ...] = ()
    pairing: Pairing = Pairing()
    seed: int = 1234
    dtype: str = "float32"
    local_workers: int = 1
    eval: dict = attrs.field(factory=dict)
    scale: str | None = None
    corpus: dict | None = None  # checked corpus spec (moe_schema.corpus)
    train: dict | None = None  # suite-wide train settings; None: nothing is trained
    train_seeds: tuple[int, ...] = ()
    sweep: dict = attrs.field(factory=dict)  # checked `sweep:` ({setting: [values]}); models hold every point
    prices: dict = attrs.field(factory=dict)  # `prices:` USD per device-hour over moe_schema.devices' defaults
    raw: dict = attrs.field(factory=dict, repr=False)  # the YAML as read, kept for the run folder


# ---------------------------------------------------------------- small checking helpers


# the shared checks (moe_schema.check) under the names this module has always used
_known, _expect, _got = known_keys, expect, got


def check_name(path: str, name: Any) -> str:
    """A suite's or a model's name: letters, digits and ``_ . + -`` (the whole name: a trailing
    newline is refused too), at most ``NAME_MAX`` characters; it names folders and files."""
    name = _expect(path, name, str)
    if len(name) > NAME_MAX:
        raise SuiteError(path, f"{_got(name)} is {len(name)} characters long; at most {NAME_MAX}")
    if not _NAME_RE.fullmatch(name):
        raise SuiteError(path, f"{_got(name)}: use letters, digits and _ . + - only")
    return name


def plugin_entry(item: Any, path: str) -> tuple[str, dict]:
    """``name`` or ``{name: ..., **params}`` → (name, params)."""
    if isinstance(item, str):
        item = {"name": item}
    _expect(path, item, dict, "a name or a map with 'name'")
    if "name" not in item:
        raise SuiteError(path, "missing 'name'")
    name = _expect(f"{path}.name", item["name"], str)
    return name, {k: v for k, v in item.items() if k != "name"}


# ---------------------------------------------------------------- sections


def _parse_build(path: str, m: dict, base: Path, seed: int) -> tuple[dict, str | None, bool | None]:
    has = [k for k in ("checkpoint", "config") if k in m]
    if len(has) != 1:
        raise SuiteError(path, "give exactly one of 'checkpoint' (a local directory or hub id) or 'config'")
    if "checkpoint" in m:
        ckpt = _expect(f"{path}.checkpoint", m["checkpoint"], str)
        looks_local = ckpt.startswith((".", "/", "~")) or (base / ckpt).exists()
        if not looks_local:
            if not re.match(r"^[\w.-]+(/[\w.-]+)?$", ckpt):
                raise SuiteError(f"{path}.checkpoint", f"not a local directory nor a hub id: {ckpt!r}")
            return {"checkpoint": ckpt}, None, None
        local = (base / Path(ckpt).expanduser()).resolve()
        if not local.is_dir():
            raise SuiteError(f"{path}.checkpoint", f"no such checkpoint directory: {local}")
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            raise SuiteError(f"{path}.checkpoint", f"{local} has no config.json: not a Hugging Face checkpoint")
        import json

        model_type = json.loads(cfg_file.read_text()).get("model_type")
        fam = FAMILIES.get(model_type)
        moe = fam.moe if fam else None
        return {"checkpoint": str(local)}, model_type, moe
    cfg = check_config(m["config"], f"{path}.config")
    mt, fam = cfg["model_type"], FAMILIES[cfg["model_type"]]
    build_seed = m.get("seed", seed)
    _expect(f"{path}.seed", build_seed, int)
    return {"config": dict(cfg), "seed": build_seed}, mt, fam.moe


MODEL_KEYS = ["name", "checkpoint", "config", "derive", "seed", "routing", "eval_routing", "dtype",
              "trust_remote_code", "experts_implementation", "train", "engine", "quant"]
DERIVE_KEYS = ["from", "match", "family", "multiple_of", "num_experts", "top_k", "shared_experts", "granularity"]


def _scaled_config(path: str, m: dict, scale_config: dict) -> dict:
    """A model's config with the suite's chosen scale under it (keys the family does not know are left out)."""
    cfg = _expect(f"{path}.config", m["config"], dict)
    fam = FAMILIES.get(cfg.get("model_type"))
    if not scale_config or fam is None:
        return cfg
    return {**{k: v for k, v in scale_config.items() if k in fam.keys}, **cfg}


def _derived_config(path: str, m: dict, configs: dict[str, dict]) -> dict:
    from harness import derive as deriver  # torch-free parameter arithmetic

    d = _expect(f"{path}.derive", m["derive"], dict)
    _known(f"{path}.derive", d, DERIVE_KEYS)
    for key in ("from", "match"):
        if key not in d:
            raise SuiteError(f"{path}.derive", f"missing {key!r}")
    source = d["from"]
    if source not in configs:
        known = ", ".join(configs) or "none"
        raise SuiteError(f"{path}.derive.from", f"no config build named {source!r} before this model; known: {known}")
    kwargs = {k: v for k, v in d.items() if k not in ("from", "match")}  # derive_twin's keywords: DERIVE_KEYS
    # a DeriveError is a SchemaError (a SuiteError) at its own path under models[i].derive
    return deriver.derive_twin(configs[source], d["match"], where=f"{path}.derive", **kwargs)


def _parse_model(path: str, m: Any, base: Path, seed: int, dtype: str, scale_config: dict | None = None,
                 configs: dict[str, dict] | None = None) -> ModelSpec:
    _expect(path, m, dict, "a map")
    _known(path, m, MODEL_KEYS)
    if "name" not in m:
        raise SuiteError(path, "missing 'name'")
    name = check_name(f"{path}.name", m["name"])
    if "derive" in m:
        if "checkpoint" in m or "config" in m:
            raise SuiteError(f"{path}.derive", "a derived build takes no 'checkpoint' or 'config' of its own")
        m = {**m, "config": _derived_config(path, m, configs or {})}
    elif "config" in m:
        m = {**m, "config": _scaled_config(path, m, scale_config or {})}
    build, family, moe = _parse_build(path, m, base, seed)
    routes = _parse_routes(path, "routing", m.get("routing"), name, family, moe)
    if not routes and moe is not False:
        routes.append(RoutingSpec("native", {}, "native"))
    eval_routes = _parse_routes(path, "eval_routing", m.get("eval_routing"), name, family, moe)
    dup = next((r.label for r in eval_routes if r.label in {x.label for x in routes}), None)
    if dup:
        raise SuiteError(f"{path}.eval_routing", f"strategy {dup} is already in routing")
    mdtype = m.get("dtype", dtype)
    if mdtype not in DTYPES:
        raise SuiteError(f"{path}.dtype", f"expected one of {', '.join(DTYPES)}, got {_got(mdtype)}")
    trc = _expect(f"{path}.trust_remote_code", m.get("trust_remote_code", False), bool)
    impl = m.get("experts_implementation")
    if impl is not None:
        _expect(f"{path}.experts_implementation", impl, str)
    train_over = _expect(f"{path}.train", m.get("train") or {}, dict)
    if train_over and "config" not in build:
        raise SuiteError(f"{path}.train", "only config builds are trained; this one is a checkpoint")
    raw_engines = _quant_axis(path, m["quant"], m.get("engine")) if "quant" in m else m.get("engine")
    engines = _parse_engines(path, raw_engines, name, build, family, mdtype, routes, eval_routes)
    return ModelSpec(name, build, family, moe, tuple(routes), mdtype, trc, impl, m.get("derive"), dict(train_over),
                     tuple(eval_routes), engines=engines)


def _quant_axis(path: str, quants, raw) -> list:
    """A model's ``quant: [f32, q8_0, q4_0]``: each of its engines that takes a ``quant`` parameter
    (llamacpp) becomes one engine entry per quantization, so each is its own variant, as routing
    strategies are; engines without one (transformers) stay as they are. Pairs then form within one
    engine and one quantization (``harness.pairs``: the engine label carries it)."""
    from moe_schema import engines as eng

    if isinstance(quants, str):
        quants = [quants]
    _expect(f"{path}.quant", quants, list, "a quantization or a list of them")
    if not quants:
        raise SuiteError(f"{path}.quant", "empty: name at least one quantization")
    if len(set(map(repr, quants))) != len(quants):
        raise SuiteError(f"{path}.quant", "a quantization is listed twice")
    items = raw if isinstance(raw, list) else [eng.DEFAULT if raw is None else raw]
    out, takers = [], []
    for item in items:
        name = item if isinstance(item, str) else item.get("name") if isinstance(item, dict) else None
        try:
            spec = eng.get(name) if isinstance(name, str) else None
        except eng.UnknownName:
            spec = None  # suite_engines names it, with its path
        if spec is None or "quant" not in attrs.fields_dict(spec.Params):
            out.append(item)
            continue
        takers.append(name)
        if isinstance(item, dict) and "quant" in item:
            raise SuiteError(f"{path}.engine", f"engine {name} names quant {item['quant']!r} and the model's "
                                               f"quant axis too; write it in one place")
        for j, q in enumerate(quants):
            eng.params_of(name, {"quant": q}, f"{path}.quant[{j}]")  # the engine's own check, at this path
            out.append({**(item if isinstance(item, dict) else {"name": item}), "quant": q})
    if not takers:
        known = [n for n in eng.ENGINES.names() if "quant" in attrs.fields_dict(eng.get(n).Params)]
        raise SuiteError(f"{path}.quant", f"none of this model's engines takes a quantization; "
                                          f"{', '.join(known) or 'no installed engine'} does (add it to engine:)")
    return out


def _parse_engines(path: str, raw, name: str, build: dict, family, dtype: str, routes, eval_routes) -> tuple:
    """A model's ``engine:`` (moe_schema.engines.suite_engines), and what each engine cannot run
    (moe_schema.engines.refusal, the one check the worker runs too), refused here, naming the
    variant: the build (family, head size, dtype) and each routing strategy whose rule needs what
    the engine does not give it."""
    from moe_schema import engines as eng

    specs = eng.suite_engines(f"{path}.engine", raw)
    config = build.get("config")
    if config is None and "checkpoint" in build and family is not None:  # a local checkpoint
        import json

        config = json.loads((Path(build["checkpoint"]) / "config.json").read_text())
    asked = [(key, j, r) for key, items in (("routing", routes), ("eval_routing", eval_routes))
             for j, r in enumerate(items)]
    for i, spec in enumerate(specs):
        refused = eng.refusal(spec, config=config, dtype=dtype, family=family,
                              strategies=[r.config for _, _, r in asked],
                              checkpoint=build.get("checkpoint") if family is not None else None)  # a local folder
        if refused is None:
            continue
        label = eng.label(spec)
        if refused.what == "routing":
            key, j, r = asked[refused.index]
            raise SuiteError(f"{path}.{key}[{j}]", f"{r.name} cannot run on engine {spec['name']} "
                                                   f"(variant {name}@{r.label}{label}): {refused.why}")
        where = f"{path}.engine[{i}]" if isinstance(raw, list) else f"{path}.engine"
        raise SuiteError(where, f"{name}{label} cannot run on engine {spec['name']}: {refused.why}")
    return specs


def _parse_routes(path: str, key: str, items, name: str, family, moe) -> list[RoutingSpec]:
    """A model's ``routing`` or ``eval_routing`` list (a single name or map is a list of one)."""
    if items is None:
        return []
    if moe is False:
        raise SuiteError(f"{path}.{key}", f"{name!r} is a dense build ({family}); routing applies to MoE builds")
    if isinstance(items, (str, dict)):
        items = [items]
    _expect(f"{path}.{key}", items, list)
    from moe_schema.routing import routing_config  # the worker's check of variant.routing, at YAML paths

    routes = []
    for j, item in enumerate(items):
        rname, params = plugin_entry(item, f"{path}.{key}[{j}]")
        cfg = routing_config(rname, params, f"{path}.{key}[{j}]")
        routes.append(RoutingSpec(rname, params, cfg.label(), cfg))
    labels = [r.label for r in routes]
    dup = next((lab for lab in labels if labels.count(lab) > 1), None)
    if dup:
        raise SuiteError(f"{path}.{key}", f"strategy {dup} listed twice")
    return routes


def _task_name_from_yaml(path: str, file: Path, outside_ok: bool = False) -> str:
    class _Loader(yamlfile.BoundedLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)

    def load(yaml_file: Path):
        try:
            return yamlfile.load(yaml_file.read_text(), _Loader)
        except yaml.YAMLError as exc:
            raise SuiteError(path, f"{yaml_file} is not valid YAML: {str(exc).splitlines()[0]}") from None

    doc = load(file)
    if not isinstance(doc, dict) or not isinstance(doc.get("task"), str):
        raise SuiteError(path, f"{file} is not an lm-eval task file (no 'task:' name)")
    from moe_schema.taskfiles import TaskFilesError, check_links, data_paths, with_includes  # the worker's checks

    try:  # the config lm-eval builds (includes merged), with the paths the worker will read
        data_paths(with_includes(file, load, where=file.name), file.parent, outside_ok=outside_ok, where=file.name)
        check_links(file.parent)
    except TaskFilesError as exc:
        raise SuiteError(path, str(exc)) from None
    return doc["task"]


def _parse_task(path: str, t: Any, base: Path, corpus: dict | None = None, outside_ok: bool = False) -> TaskSpec:
    if isinstance(t, str):
        t = {"path": t} if t.endswith((".yaml", ".yml")) else {"name": t}
    _expect(path, t, dict, "a task name or a map")
    _known(path, t, ["name", "path", "corpus", "limit", "num_fewshot", "shards"])
    task_corpus = None
    if "corpus" in t:
        from moe_schema.knowledge import TASK_NAMES

        name = _expect(f"{path}.corpus", t["corpus"], str)
        if corpus is None or corpus.get("kind") != "knowledge":
            raise SuiteError(f"{path}.corpus", "corpus tasks need a suite-level 'corpus' of kind knowledge")
        if name not in TASK_NAMES:
            raise SuiteError(f"{path}.corpus", f"unknown corpus task {name!r}; known: {', '.join(TASK_NAMES)}")
        task_path, task_corpus = None, corpus
    elif "path" in t:
        p = _expect(f"{path}.path", t["path"], str)
        file = (base / Path(p).expanduser()).resolve()
        if not file.is_file():
            raise SuiteError(f"{path}.path", f"no such task file: {file}")
        name = _task_name_from_yaml(f"{path}.path", file, outside_ok)
        if "name" in t and t["name"] != name:
            raise SuiteError(f"{path}.name", f"{t['name']!r} does not match the file's task {name!r}")
        task_path = str(file)
    elif "name" in t:
        name = _expect(f"{path}.name", t["name"], str)
        task_path = None
    else:
        raise SuiteError(path, "give 'name' (an lm-eval task) or 'path' (a local task YAML)")
    limit = check_limit(t.get("limit"), f"{path}.limit")  # the worker runs the same checks
    shots = check_num_fewshot(t.get("num_fewshot"), f"{path}.num_fewshot")
    shards = _expect(f"{path}.shards", t.get("shards", 1), int)
    if shards < 1:
        raise SuiteError(f"{path}.shards", f"must be >= 1, got {shards}")
    return TaskSpec(name, task_path, limit, shots, shards, task_corpus)


TOP_KEYS = ["name", "description", "seed", "dtype", "models", "tasks", "probes", "workers", "pairing",
            "local_workers", "eval", "scale", "scales", "corpus", "train", "sweep", "prices"]
SCALE_KEYS = ["config", "corpus", "train", "sweep", "models", "only"]
# models: {<model name>: config keys at this scale}; only: [<model name>, ...], the models this scale runs


def _parse_scale(data: dict, override: str | None) -> tuple[str | None, dict]:
    """The chosen entry of ``scales`` (``scale:``, or ``--scale`` on the command line)."""
    scales = _expect("scales", data.get("scales") or {}, dict)
    name = override if override is not None else data.get("scale")
    if name is None:
        return None, {}
    where = "scale" if override is None else "--scale"
    _expect(where, name, str)
    if name not in scales:
        raise SuiteError(where, f"unknown scale {name!r}; known: {', '.join(scales) or 'none (no scales: map)'}")
    chosen = _expect(f"scales.{name}", scales[name], dict)
    _known(f"scales.{name}", chosen, SCALE_KEYS)
    for key in SCALE_KEYS:
        if key == "only":
            only = _expect(f"scales.{name}.only", chosen.get(key) or [], list, "a list of model names")
            for i, n in enumerate(only):
                _expect(f"scales.{name}.only[{i}]", n, str, "a model name")
            continue
        _expect(f"scales.{name}.{key}", chosen.get(key) or {}, dict)
    # each family takes the keys it knows; one that no family knows is a typo, never silently dropped
    _known(f"scales.{name}.config", chosen.get("config") or {}, sorted(set().union(*(f.keys for f in FAMILIES.values()))))
    return name, chosen


def _parse_training(data: dict, scale: dict, seed: int) -> tuple[dict | None, dict | None, tuple[int, ...]]:
    from moe_schema.corpus import check_corpus
    from moe_schema.train import check_train

    corpus = None
    if "corpus" in data or scale.get("corpus"):
        raw = {**(_expect("corpus", data.get("corpus") or {}, dict)), **(scale.get("corpus") or {})}
        corpus = check_corpus(raw, where="corpus")  # a CorpusError is a SchemaError at its path
    train = None
    seeds: tuple[int, ...] = ()
    if "train" in data or scale.get("train"):
        raw = {**(_expect("train", data.get("train") or {}, dict)), **(scale.get("train") or {})}
        seeds_raw = raw.pop("seeds", [seed])
        _expect("train.seeds", seeds_raw, list, "a list of ints")
        for i, s_ in enumerate(seeds_raw):
            _expect(f"train.seeds[{i}]", s_, int)
        if not seeds_raw or len(set(seeds_raw)) != len(seeds_raw):
            raise SuiteError("train.seeds", f"expected distinct seeds, got {seeds_raw}")
        train = check_train(raw, where="train")  # a TrainSpecError is a SchemaError at its path
        if corpus is None:
            raise SuiteError("train", "training needs a suite-level 'corpus'")
        seeds = tuple(seeds_raw)
    return corpus, train, seeds


def parse(data: Any, path: Path | None = None, scale: str | None = None) -> Suite:
    """Validate an already-loaded YAML document. ``path`` resolves relative file names;
    ``scale`` overrides the suite's ``scale:`` (the one size knob)."""
    base = path.parent.resolve() if path else Path.cwd()
    _expect("", data, dict, "a map at the top of the suite")
    _known("", data, TOP_KEYS)
    if "name" not in data:
        raise SuiteError("name", "missing: every suite has a name")
    name = check_name("name", data["name"])
    seed = _expect("seed", data.get("seed", 1234), int)
    dtype = data.get("dtype", "float32")
    if dtype not in DTYPES:
        raise SuiteError("dtype", f"expected one of {', '.join(DTYPES)}, got {_got(dtype)}")

    models_raw = _expect("models", data.get("models"), list, "a list of models")
    if not models_raw:
        raise SuiteError("models", "empty: a suite needs at least one model")
    scale_name, scale_cfg = _parse_scale(data, scale)
    corpus, train, seeds = _parse_training(data, scale_cfg, seed)
    if corpus is not None and corpus.get("tokenizer") == "word":  # config builds get the word vocabulary
        from moe_schema.bios import word_vocab_size

        scale_cfg = {**scale_cfg, "config": {"vocab_size": word_vocab_size(), **(scale_cfg.get("config") or {})}}
    sweep = _parse_sweep(data, scale_cfg, corpus, train)
    models: list[ModelSpec] = []
    for point in sweep_points(sweep):
        configs: dict[str, dict] = {}  # this point's config builds so far, for `derive: {from: ...}`
        seen: dict[str, int] = {}
        for i, m in enumerate(models_raw):
            own = (scale_cfg.get("models") or {}).get(m.get("name")) if isinstance(m, dict) else None
            if own is not None:  # this model's own shape at the chosen scale
                _expect(f"scales.{scale_name}.models.{m['name']}", own, dict)
                if not isinstance(m.get("config"), dict):
                    raise SuiteError(f"scales.{scale_name}.models.{m['name']}", "only a model with a 'config' "
                                                                               "takes config keys per scale")
                m = {**m, "config": {**m["config"], **own}}
            spec = _parse_model(f"models[{i}]", m, base, seed, dtype, scale_cfg.get("config"), configs)
            if spec.name in seen:
                raise SuiteError(f"models[{i}].name", f"{spec.name!r} already used by models[{seen[spec.name]}]")
            seen[spec.name] = i
            if spec.train and train is None:
                raise SuiteError(f"models[{i}].train", "per-model train settings need a suite-level 'train'")
            spec = _at_point(spec, point, sweep, f"models[{i}]", corpus)
            if spec.train:
                from moe_schema.train import check_train

                check_train({**train, **spec.train}, where=f"models[{i}].train")
            if "config" in spec.build:
                configs[spec.name] = spec.build["config"]
            if scale_cfg.get("only") and m.get("name") not in scale_cfg["only"]:
                continue  # derivable from, but not run at this scale
            models.append(attrs.evolve(spec, name=spec.name + point_label(point)))  # "" without a sweep
    names = {m.get("name") for m in models_raw if isinstance(m, dict)}
    for key in scale_cfg.get("models") or {}:
        if key not in names:
            raise SuiteError(f"scales.{scale_name}.models.{key}", unknown("model", key, sorted(n for n in names if n)))
    for i, key in enumerate(scale_cfg.get("only") or []):
        if key not in names:
            raise SuiteError(f"scales.{scale_name}.only[{i}]", unknown("model", key, sorted(n for n in names if n)))
    moe_settings = [k for k in sweep if k in _MOE_SETTINGS]
    if moe_settings and not any(m.moe is True and "config" in m.build and m.derive is None for m in models):
        raise SuiteError(f"sweep.{moe_settings[0]}", "no config MoE build to apply it to (derived and "
                                                     "checkpoint builds keep their own)")

    eval_opts = check_eval_options(data.get("eval") or {}, "eval")  # the worker's check of job.eval
    tasks_raw = _expect("tasks", data.get("tasks") or [], list)
    outside_ok = eval_opts.get("data_outside_task_folder", False)
    tasks = [_parse_task(f"tasks[{i}]", t, base, corpus, outside_ok) for i, t in enumerate(tasks_raw)]

    probes_raw = _expect("probes", data.get("probes") or [], list)
    probes = []
    if probes_raw:
        from moe_schema.probes import parse_probe  # the check the worker runs on a probe job

        for i, item in enumerate(probes_raw):
            pname, params = plugin_entry(item, f"probes[{i}]")
            parse_probe(pname, params, f"probes[{i}]")
            probes.append(ProbeSpec(pname, params))

    workers_raw = data.get("workers") or []
    if isinstance(workers_raw, str):
        workers_raw = [w for w in workers_raw.split(",") if w]
    _expect("workers", workers_raw, list)
    for i, ep in enumerate(workers_raw):
        _expect(f"workers[{i}]", ep, str)
        if not re.match(r"^(tcp|ipc)://\S+$", ep) and not ep.startswith("@"):
            raise SuiteError(f"workers[{i}]", f"expected an endpoint like tcp://host:5555 or ipc:///path, got {ep!r}")

    pairing_raw = _expect("pairing", data.get("pairing") or {}, dict)
    _known("pairing", pairing_raw, ["tolerance"])
    tol = _expect("pairing.tolerance", pairing_raw.get("tolerance", 0.10), (int, float))
    if not 0 <= tol < 1:
        raise SuiteError("pairing.tolerance", f"expected a fraction in [0, 1), got {tol}")

    local = _expect("local_workers", data.get("local_workers", 1), int)
    if local < 1:
        raise SuiteError("local_workers", f"must be >= 1, got {local}")
    prices = check_prices("prices", data["prices"]) if data.get("prices") is not None else {}

    return Suite(name=name, path=path, models=tuple(models), tasks=tuple(tasks), probes=tuple(probes),
                 workers=tuple(workers_raw), pairing=Pairing(float(tol)), seed=seed, dtype=dtype,
                 local_workers=local, eval=dict(eval_opts), scale=scale_name, corpus=corpus, train=train,
                 train_seeds=seeds, sweep=sweep, prices=prices, raw=data)


_MOE_SETTINGS = ("top_k", "experts")


def _parse_sweep(data: dict, scale: dict, corpus: dict | None, train: dict | None) -> dict:
    """The checked ``sweep:`` (a scale's ``sweep`` replaces the suite's values setting by setting)."""
    from harness.sweep import SweepError, check_sweep

    raw = data.get("sweep")
    if scale.get("sweep"):
        raw = {**(raw if isinstance(raw, dict) else {}), **scale["sweep"]}
    try:
        sweep = check_sweep(raw)
    except SweepError as exc:
        raise SuiteError(exc.path, exc.message) from None
    for setting in sweep:
        if setting.startswith("train.") and train is None:
            raise SuiteError(f"sweep.{setting}", "sweeps a train setting, but the suite has no 'train'")
        if setting.startswith("corpus.") and (corpus is None or corpus.get("kind") != "knowledge" or train is None):
            raise SuiteError(f"sweep.{setting}", "needs a trained suite with a 'corpus' of kind knowledge")
    return sweep


def sweep_points(sweep: dict) -> list[dict]:
    from harness.sweep import points

    return points(sweep)


def point_label(point: dict) -> str:
    from harness.sweep import point_label as label

    return label(point)


def _at_point(spec: ModelSpec, point: dict, sweep: dict, path: str, corpus: dict | None) -> ModelSpec:
    """``spec`` at one sweep point: its config (top-k, experts), train and corpus settings changed.
    Derived twins are parsed after their source at the same point, so they follow its config."""
    if not point:
        return spec
    from harness import derive as deriver
    from harness.sweep import index_of

    build, train, spec_corpus = spec.build, dict(spec.train), spec.corpus
    own_moe = spec.moe is True and "config" in build and spec.derive is None
    for setting, value in point.items():
        where = f"sweep.{setting}[{index_of(sweep, setting, value)}]"
        if setting in _MOE_SETTINGS and own_moe:
            cfg = dict(build["config"])  # a DeriveError is a SuiteError at ``where`` already
            if setting == "top_k":
                experts = deriver.resolved(cfg)["num_experts"]
                if value > experts:
                    raise SuiteError(where, f"{value} experts per token, but {path} {spec.name!r} has "
                                            f"{experts} experts")
                cfg["num_experts_per_tok"] = value
            else:
                cfg = deriver.regranulate(cfg, value, where=where)
            build = {**build, "config": cfg}
        elif setting.startswith("train.") and "config" in build:
            train[setting.removeprefix("train.")] = value
        elif setting == "corpus.entities" and "config" in build:
            from moe_schema.corpus import check_corpus

            spec_corpus = check_corpus({**corpus, "entities": value}, where=where)  # a SuiteError at its path
    return attrs.evolve(spec, build=build, train=train, corpus=spec_corpus, sweep=dict(point))


def load(path: str | Path, scale: str | None = None) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError("", f"no such suite file: {path}")
    try:
        data = yamlfile.load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]  # one line, whatever the error
        raise SuiteError("", f"{path} is not valid YAML{where}: {problem}") from None
    return parse(data, path, scale)
