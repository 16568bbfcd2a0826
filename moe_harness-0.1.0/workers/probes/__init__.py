"""Latency, throughput, memory and routing probes, each measured next to the hardware's roofline.

moe_schema.probes (torch-free): the PROBES registry and each probe's parameters. job.py: the probe job.
steps.py: the prefill / decode loops around model.forward with a StaticCache. timer.py: timing and
percentiles. roofline.py (torch-free): bytes, FLOPs and device peaks. census.py: experts touched.
"""
