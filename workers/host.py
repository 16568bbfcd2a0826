"""The model cache of one worker: variant → loaded model, kept between jobs, evicted by memory.

A loaded base model is keyed by what determines its weights in memory: the build, the dtype, the
experts implementation, trust_remote_code and the engine hosting it (``moe_schema.hashing.model_key``;
the engine is ``variant["engine"]["name"]``, the default engine when missing, see ``workers.engines``). Variants that differ only in routing share it: the
variant's routing strategy is (re)applied on every ``load``, which first restores the native routers.

When the parameter bytes of the held builds would pass the memory budget (default: half the device's
free memory when the host starts), the least recently used builds are dropped first.

Admission: before anything is built or loaded, the build's bytes are estimated without weights
(a config build counted on the meta device, a checkpoint from its safetensors headers). A build that
cannot fit the memory the worker has (free memory plus what evicting every held build would give
back, or ``memory_limit_bytes`` where set: ``harness worker --memory-limit``) fails at once with
``OUT_OF_MEMORY`` naming the variant, the estimate and the free bytes, instead of growing until the
kernel's OOM killer ends the daemon.
"""

from __future__ import annotations

import gc
import os
import platform
import threading
import time
from collections import OrderedDict
from pathlib import Path

import attrs

from moe_schema import protocol
from moe_schema import headers
from moe_schema.engines import DEFAULT
from workers.builds.materialize import build_dir
from workers.builds.spec import parse_variant
from workers.errors import JobError
from moe_schema.hashing import model_key
from moe_schema.train import held_trained, trained_path
from moe_schema.units import BYTE_UNITS
from workers.memory import device_memory  # the OS's reading of free memory (cgroups, MemAvailable)

@attrs.define
class Loaded:
    """What a job gets from ``Host.load``: the model with the variant's routing installed."""

    model: object
    tokenizer: object
    path: Path | str
    variant: dict  # the checked variant spec (moe_schema.variant.Variant.spec)
    routing_session: object  # workers.routing.RoutingSession, or None without workers.routing
    load_s: float
    cached: bool
    home: Path | str | None = None  # the host's harness home: where a job's generated and shipped files go
    engine: object = None  # the workers.engines.base.Engine hosting it (lm, probe_context)
    handle: object = None  # the engine's own object (vLLM's LLM); None for transformers
    strategy: object = None  # the routing strategy's config (moe_schema.routing), as parsed once; None: native

    @property
    def routing(self):
        """docs/internals.md calls the session ``routing``."""
        return self.routing_session


@attrs.define
class _Held:
    model: object
    tokenizer: object
    path: Path | str
    bytes: int
    dtype: str
    experts_implementation: str | None
    last_used: float
    loads: int = 0
    engine: object = None
    hosted: object = None  # workers.engines.base.Hosted


def cache_key(variant: dict) -> str:
    """The model cache's key: ``moe_schema.hashing.model_key``, the coordinator's affinity too."""
    return model_key(variant)


def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (tied weights once)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def estimate_bytes(path: Path | str, dtype: str) -> int:
    """Bytes a checkpoint directory will take once loaded in ``dtype``, read from the safetensors
    headers (no tensor is read); 0 where unknown (a hub id)."""
    path = Path(path)
    if not path.is_dir() or not any(path.glob("*.safetensors")):
        return 0
    return headers.tensor_bytes(headers.checkpoint_tensors(path), dtype)


def config_bytes(config: dict, dtype: str) -> int:
    """Bytes of a config build's weights in ``dtype`` (float32 for ``auto``), counted on the meta device."""
    from workers.builds.meta import meta_model
    from workers.builds.params import count_params

    total = count_params(meta_model(config))["total"]
    return total * headers.SUITE_DTYPE_BYTES.get(dtype, 4)


def parse_bytes(text: str) -> int:
    """``"2GB"``, ``"512MiB"``, ``"123456"`` -> bytes (``harness worker --memory-limit``)."""
    units = {"": 1, **BYTE_UNITS}  # a bare number is bytes
    t = text.strip().lower()
    number = t.rstrip("kmgtib")
    try:
        value = float(number)
        unit = units[t[len(number):]]
    except (ValueError, KeyError):
        raise ValueError(f"{text!r}: expected bytes like 123456, 2GB or 512MiB") from None
    if value <= 0:
        raise ValueError(f"{text!r}: must be positive")
    return int(value * unit)


class Host:
    """Loads variants on one device and keeps their base models while memory allows."""

    def __init__(self, device: str = "cpu", memory_budget_bytes: int | None = None,
                 home: str | Path | None = None, memory_limit_bytes: int | None = None):
        import torch

        try:
            self.device = str(torch.device(device))
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device {device!r}: not a torch device ({exc})") from None
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine")
        self.home = home
        self.memory_limit_bytes = memory_limit_bytes
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple, _Held] = OrderedDict()  # least recently used first
        if memory_budget_bytes is None:
            memory_budget_bytes = self.memory()["free"] // 2
            if memory_limit_bytes is not None:
                memory_budget_bytes = min(memory_budget_bytes, memory_limit_bytes)
        self.budget_bytes = int(memory_budget_bytes)

    # --- loading ---------------------------------------------------------------------------

    def load(self, variant) -> Loaded:
        """The variant's model with its routing strategy applied; from the cache when held.
        ``variant``: a ``moe_schema.variant.Variant`` parsed once by the job (a dict is parsed here)."""
        from workers.engines import engine_for

        variant = parse_variant(variant)
        engine = engine_for(variant)
        key = cache_key(variant.spec)
        t0 = time.perf_counter()
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                self._held.move_to_end(key)
        cached = held is not None
        if not cached:
            held = self._load_new(key, variant, engine)
        session = engine.route(held.hosted, variant.strategy)
        held.last_used = time.time()
        held.loads += 1
        return Loaded(model=held.model, tokenizer=held.tokenizer, path=held.path, variant=variant.spec,
                      routing_session=session, load_s=time.perf_counter() - t0, cached=cached,
                      home=self.home, engine=engine, handle=held.hosted.handle, strategy=variant.strategy)

    def _load_new(self, key: str, variant, engine) -> _Held:
        expected = self.admit(variant.spec)
        engine.check(variant, self.device, self.home)  # refusals first: they must not cost a held build
        self._evict(room_for=expected)
        if engine.spec.one_build_per_process:  # process-wide state (vLLM): its other builds go first
            self._evict_engine(engine.name)
        try:
            hosted = engine.load(variant, self.device, self.home)
        except JobError as exc:  # out of memory with other builds held: drop them all, try once more
            if exc.code != protocol.OUT_OF_MEMORY or not self._held:
                raise
            self.evict_all()
            hosted = engine.load(variant, self.device, self.home)
        held = _Held(model=hosted.model, tokenizer=hosted.tokenizer, path=hosted.path, bytes=hosted.bytes,
                     dtype=variant.spec["dtype"], experts_implementation=variant.spec["experts_implementation"],
                     last_used=time.time(), engine=engine, hosted=hosted)
        with self._lock:
            self._held[key] = held
        self._evict(room_for=0, keep=key)
        return held

    def admit(self, variant: dict) -> int:
        """The variant's estimated bytes, or ``JobError(OUT_OF_MEMORY)`` at once if it cannot fit."""
        build, dtype = variant["build"], variant["dtype"]
        name = variant.get("name") or "the variant"
        if "config" in build:
            path = build_dir(build, self.home)
            if (path / "config.json").is_file():
                expected = estimate_bytes(path, dtype)
            else:  # built in float32 on the CPU first, then loaded in the dtype
                try:
                    expected = config_bytes(build["config"], dtype)
                    made = config_bytes(build["config"], "float32")
                except Exception:  # a config the family rejects: building it says why, in its words
                    return 0
                self._check(name, made, "float32 (building it)", self._available("cpu"))
        elif "trained" in build:
            expected = estimate_bytes(trained_path(build["trained"], self.home), dtype)
        else:
            expected = estimate_bytes(build["checkpoint"], dtype)
        self._check(name, expected, dtype, self._available(self.device))
        return expected

    def _available(self, device: str) -> int:
        """Bytes a new build may take on ``device``: the limit, else free memory plus the held builds."""
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        free = device_memory(device)["free"]
        return free + (self.held_bytes() if device == self.device else 0)

    def _check(self, name: str, expected: int, dtype: str, available: int) -> None:
        if expected > available:
            limit = " (the worker's --memory-limit)" if self.memory_limit_bytes is not None else ""
            raise JobError(protocol.OUT_OF_MEMORY,
                           f"variant {name}: needs an estimated {expected:,} bytes in {dtype} but {self.device} "
                           f"has {available:,} bytes free{limit}; not loaded (a smaller dtype or a bigger "
                           f"device would fit it)")

    def _evict(self, room_for: int, keep: tuple | None = None) -> None:
        """Drop least recently used builds until the held bytes plus ``room_for`` fit the budget."""
        dropped = []
        with self._lock:
            for key in list(self._held):
                if self.held_bytes() + room_for <= self.budget_bytes:
                    break
                if key != keep:
                    dropped.append(self._held.pop(key))
        self._close(dropped)

    def _evict_engine(self, name: str) -> None:
        """Drop the builds ``name`` holds (vLLM hosts one build per process)."""
        with self._lock:
            dropped = [self._held.pop(k) for k, h in list(self._held.items())
                       if getattr(h.engine, "name", None) == name]
        self._close(dropped)

    def evict_all(self) -> None:
        with self._lock:
            dropped = list(self._held.values())
            self._held.clear()
        self._close(dropped, always=True)

    def _close(self, dropped: list, always: bool = False) -> None:
        for held in dropped:
            if held.engine is not None and held.hosted is not None:
                held.engine.close(held.hosted)
        if dropped or always:
            self._free()

    def _free(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # --- reporting -------------------------------------------------------------------------

    def held_bytes(self) -> int:
        return sum(h.bytes for h in self._held.values())

    def status(self) -> dict:
        """Held builds (least recently used first), the budget, the device's memory now, and the
        trained checkpoints on disk (their train keys)."""
        with self._lock:
            builds = [{"path": str(h.path), "bytes": h.bytes, "last_used": h.last_used, "dtype": h.dtype,
                       "experts_implementation": h.experts_implementation, "loads": h.loads,
                       "engine": getattr(h.engine, "name", DEFAULT)}
                      for h in self._held.values()]
            held = self.held_bytes()
        return {"device": self.device, "budget_bytes": self.budget_bytes, "held_bytes": held,
                "builds": builds, "memory": self.memory(), "trained": held_trained(self.home)}

    def memory(self) -> dict:
        """The device's total and free memory in bytes (``device_memory``), and on CUDA what torch holds."""
        out = device_memory(self.device)
        if self.device.startswith("cuda"):
            import torch

            out["allocated"] = int(torch.cuda.memory_allocated(torch.device(self.device)))
        return out

    def device_info(self) -> dict:
        """What the daemon's ``hello`` says about the device: type, name, total memory."""
        import torch

        kind = torch.device(self.device).type
        if kind == "cuda":
            name = torch.cuda.get_device_name(torch.device(self.device))
        else:
            name = _cpu_name()
        return {"device": self.device, "type": kind, "name": name, "total_memory": self.memory()["total"],
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}




def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
