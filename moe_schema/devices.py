"""Accelerator peaks and prices: one table for the roofline, MFU in training, `harness plan` and the
report's cost per answer. Torch-free.

The probes' roofline, the training job's MFU and the planner used to keep two tables that
disagreed (training called an H100 PCIe a 989 TFLOP/s SXM part). This is now the only table;
``harness`` imports it too, so it must stay free of torch.

Figures are vendor datasheet peaks, dense (no structured sparsity): memory bandwidth in GB/s
(1e9 bytes), bf16/fp16 tensor-core TFLOP/s, fp32 TFLOP/s without tensor cores, and memory in GB
(1e9 bytes, as the datasheets state it). MoE-CAP (arXiv 2412.07067) uses the same bandwidths
(H100 3.35 TB/s, H200 4.8 TB/s), so S-MBU figures compare with it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Device:
    key: str             # what `harness plan --device` accepts, lower case
    fragment: str        # matched (case-insensitively) inside torch.cuda.get_device_name()
    bandwidth_gbs: float
    tflops_half: float   # bf16 / fp16 dense tensor-core
    tflops_fp32: float
    memory_gb: float

    def tflops(self, dtype: str) -> float:
        return self.tflops_fp32 if dtype == "float32" else self.tflops_half

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


# Most specific fragment first: "H100 PCIe" before "H100", "A100" before "A10", "L40S" before "L4".
DEVICES: tuple[Device, ...] = (
    Device("h100-pcie", "H100 PCIe", 2000.0, 756.0, 51.0, 80.0),
    Device("h100", "H100", 3350.0, 989.0, 67.0, 80.0),  # SXM
    Device("h200", "H200", 4800.0, 989.0, 67.0, 141.0),
    Device("a100", "A100", 2039.0, 312.0, 19.5, 80.0),  # 80GB SXM
    Device("a100-40gb", "A100-SXM4-40GB", 1555.0, 312.0, 19.5, 40.0),
    Device("l40s", "L40S", 864.0, 362.0, 91.6, 48.0),
    Device("l4", "L4", 300.0, 121.0, 30.3, 24.0),
    Device("a10", "A10", 600.0, 125.0, 31.2, 24.0),
)
DEVICES = tuple(sorted(DEVICES, key=lambda d: -len(d.fragment)))  # longest (most specific) match wins
BY_KEY = {d.key: d for d in DEVICES}


@attrs.frozen(kw_only=True)
class Peaks:
    """The peaks a roofline uses for one device and dtype, and where they came from."""
    name: str
    bandwidth_gbs: float  # memory bandwidth, GB/s (1e9 bytes)
    tflops: float  # peak dense FLOP/s for the dtype in use, 1e12
    source: str  # "table", "measured" or "suite"

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def table_peaks(device_name: str, dtype: str = "bfloat16") -> Peaks | None:
    """Peaks of a known accelerator (by a fragment of its name), or None."""
    device = by_name(device_name)
    if device is None:
        return None
    return Peaks(name=device_name, bandwidth_gbs=device.bandwidth_gbs, tflops=device.tflops(dtype), source="table")


def by_name(device_name: str) -> Device | None:
    """The table entry whose fragment is in ``device_name`` (a CUDA device name), or None."""
    name = device_name.lower()
    return next((d for d in DEVICES if d.fragment.lower() in name), None)


def by_key(key: str) -> Device | None:
    """The entry `harness plan --device KEY` names (``h100``, ``h200``, ``a100``...), or None."""
    return BY_KEY.get(key.lower())


# ---- prices: what an hour of each device costs (cost per answer, `harness plan --device`) -----------
#: Default US dollars per device-hour, one device (CPU: one whole host). Round figures of the order of
#: on-demand cloud list prices for one such GPU in 2025, not quotes: real prices vary several-fold by
#: provider and commitment, so a suite's ``prices:`` key and ``--price KEY=USD`` replace them.
PRICES_USD_PER_HOUR: dict[str, float] = {
    "h100": 3.00, "h100-pcie": 2.50, "h200": 3.80, "a100": 1.80, "a100-40gb": 1.30,
    "l40s": 1.00, "l4": 0.80, "a10": 0.75, "cpu": 0.10,
}
CPU = "cpu"


def price_keys() -> tuple[str, ...]:
    return tuple(PRICES_USD_PER_HOUR)


def check_prices(where: str, prices, sep: str = ".") -> dict[str, float]:
    """A ``prices:`` mapping (suite key or ``--price`` overrides): known device keys to finite USD > 0."""
    import math

    from moe_schema.check import SchemaError, unknown

    if not isinstance(prices, dict):
        raise SchemaError(where, f"expected a mapping of device to USD per hour, got {type(prices).__name__}")
    out = {}
    for key, value in prices.items():
        k = str(key).lower()
        if k not in PRICES_USD_PER_HOUR:
            raise SchemaError(f"{where}{sep}{key}", unknown("device", key, price_keys()))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SchemaError(f"{where}{sep}{key}", f"expected a price in USD per hour > 0, got {value!r}")
        out[k] = float(value)
    return out


def parse_price_args(items) -> dict[str, float]:
    """``--price h100=2.5`` (repeatable) -> {"h100": 2.5}; a bad item raises SchemaError naming it."""
    from moe_schema.check import SchemaError

    raw = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise SchemaError("--price", f"expected DEVICE=USD_PER_HOUR (e.g. h100=2.5), got {item!r}")
        try:
            raw[key.strip()] = float(value)
        except ValueError:
            raise SchemaError(f"--price {key}", f"expected a number of USD per hour, got {value!r}") from None
    return check_prices("--price", raw, sep=" ")


def price_table(*overrides: dict | None) -> dict[str, float]:
    """The defaults, then each override in turn (suite, then command line)."""
    table = dict(PRICES_USD_PER_HOUR)
    for o in overrides:
        table.update(o or {})
    return table


def price_key(device_name: str | None, device_kind: str | None = None) -> str | None:
    """The price table's key for a result's device: the accelerator by name, "cpu" for a CPU run."""
    if device_name:
        d = by_name(device_name)
        if d is not None:
            return d.key
    if (device_kind or "").lower() == CPU or CPU in (device_name or "").lower():
        return CPU
    return None


def usd(seconds: float, usd_per_hour: float) -> float:
    """What ``seconds`` of a device cost at ``usd_per_hour``."""
    return seconds * usd_per_hour / 3600.0


def usd_per_million_tokens(tokens_per_s: float, usd_per_hour: float) -> float:
    """USD per 1M tokens at a throughput of ``tokens_per_s`` on a device costing ``usd_per_hour``."""
    return usd_per_hour / 3600.0 / tokens_per_s * 1e6
