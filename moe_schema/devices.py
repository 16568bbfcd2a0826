"""Device peaks: memory bandwidth and dense FLOP/s of known accelerators, the one table.

The roofline probes (``workers.probes.roofline``), training's MFU (``workers.training.job``) and
the harness's planning read it; a suite's ``device_peaks`` overrides it for a device it lacks.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Peaks:
    name: str
    bandwidth_gbs: float  # memory bandwidth, GB/s (1e9 bytes)
    tflops: float  # peak dense FLOP/s for the dtype in use, 1e12
    source: str  # "table", "measured" or "suite"

    def as_dict(self) -> dict:
        return attrs.asdict(self)


# name fragment -> (GB/s, TFLOP/s bf16/fp16 dense, TFLOP/s fp32 without tensor cores), vendor
# datasheets, no sparsity. Most specific fragment first: "H100 PCIe" before "H100", "A100" before
# "A10", "L40S" before "L4" (a name matches the first fragment it contains).
DEVICE_PEAKS = {
    "H100 PCIe": (2000.0, 756.0, 51.0),
    "H100": (3350.0, 989.0, 67.0),  # SXM
    "H200": (4800.0, 989.0, 67.0),
    "A100": (2039.0, 312.0, 19.5),  # 80GB SXM
    "L40S": (864.0, 362.0, 91.6),
    "L4": (300.0, 121.0, 30.3),
    "A10": (600.0, 125.0, 31.2),
}


def table_peaks(device_name: str, dtype: str = "bfloat16") -> Peaks | None:
    """Peaks of a known accelerator (by a fragment of its name), or None."""
    for fragment, (gbs, half, fp32) in DEVICE_PEAKS.items():  # most specific fragment first
        if fragment.lower() in device_name.lower():
            return Peaks(name=device_name, bandwidth_gbs=gbs, tflops=fp32 if dtype == "float32" else half,
                         source="table")
    return None
