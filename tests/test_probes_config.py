"""Probe parameters: validation with one-line errors naming the YAML path; the timer's statistics."""

import attrs
import numpy as np
import pytest

from moe_schema.probes import PROBES, LatencyConfig, ProbeConfigError, parse_probe
from workers.probes.timer import StepTimer, percentile, summarize


def test_registry_lists_the_four_probes():
    assert PROBES.names() == ["latency", "memory", "routing", "throughput"]


def test_suite_entry_parses_with_defaults_and_lists_become_tuples():
    c = parse_probe("latency", {"prompt_lengths": [32, 128], "batch_sizes": [1, 4], "context_lengths": [64],
                                "new_tokens": 16, "warmup": 2, "repeats": 5}, "probes[0]")
    assert isinstance(c, LatencyConfig) and c.batch_sizes == (1, 4) and c.compile is None
    assert c.to_params()["batch_sizes"] == [1, 4]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.repeats = 3
    assert parse_probe("routing", None).batch_sizes == (1, 4, 16, 64)
    assert callable(parse_probe("memory", {}).runner())


@pytest.mark.parametrize("name, params, message", [
    ("latency", {"batch_sizes": [1, 0]}, "probes[3].batch_sizes[1]: must be a positive int, got 0"),
    ("latency", {"batch_sizes": []}, "probes[3].batch_sizes: must be a non-empty list"),
    ("latency", {"batch_sizes": [1, True]}, "probes[3].batch_sizes[1]: expected int, got bool True"),
    ("latency", {"batchsizes": [1]}, "probes[3].batchsizes: unknown key (did you mean 'batch_sizes'?); known: "),
    ("throughput", {"compile": "graph"}, "probes[3].compile: must be one of none, graphs, compile "
                                         "(did you mean 'graphs'?), got 'graph'"),
    ("throughput", {"repeats": 0}, "probes[3].repeats: must be an int >= 1, got 0"),
    ("throughput", {"device_peaks": {"tflops": -1}}, "probes[3].device_peaks.tflops: must be a positive number"),
    ("throughput", {"device_peaks": {"tbs": 1}}, "probes[3].device_peaks.tbs: unknown key"),
    ("memory", {"warmup": 1}, "probes[3].warmup: unknown key; known: experts_implementation, seed, batch_sizes"),
    ("throughput", {"prompt_length": "long"}, "probes[3].prompt_length: expected int, got 'long'"),
    ("routing", {"experts_implementation": ""}, "probes[3].experts_implementation: must be a name"),
    ("latncy", {}, "probes[3].name: unknown probe 'latncy' (did you mean 'latency'?); known: latency, memory"),
    ("latency", [1], "probes[3]: probe parameters must be a mapping"),
])
def test_bad_parameters_fail_with_one_line_naming_the_path(name, params, message):
    with pytest.raises(ProbeConfigError) as e:
        parse_probe(name, params, "probes[3]")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_percentiles_on_known_samples():
    samples = [float(x) for x in range(1, 101)]  # 1..100
    for q in (0, 50, 90, 95, 99, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q))
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_in_milliseconds():
    s = summarize([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s["ms_p50"] == pytest.approx(3.0)
    assert s["ms_p90"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))
    assert s["ms_mean"] == pytest.approx(4.0)
    assert s["ms_std"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert s["n"] == 5 and summarize([0.5])["ms_std"] == 0.0


def test_cpu_step_timer_times_the_call():
    import time

    t = StepTimer("cpu").time(lambda: time.sleep(0.02))
    assert 0.019 < t < 0.5


@pytest.mark.parametrize("name", ["latency", "throughput", "memory", "routing"])
def test_the_suite_parser_accepts_yaml_lists(name):
    from harness.suite import SuiteError
    from moe_schema.check import structure

    config = structure(PROBES.get(name), {"batch_sizes": [1, 2]}, "probes[0]")
    assert config.batch_sizes == (1, 2)
    with pytest.raises(SuiteError, match="batch_sizes"):
        structure(PROBES.get(name), {"batch_sizes": [1, 0]}, "probes[0]")
