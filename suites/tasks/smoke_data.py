"""Loaders for the local smoke tasks: read the jsonl files shipped beside this file.

lm-eval calls them through ``custom_dataset: !function smoke_data.<loader>`` with the task's
metadata as keyword arguments (ignored here), so the tasks work from any current directory
and without network.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

DATA = Path(__file__).resolve().parent / "data"


def _split(name: str) -> datasets.Dataset:
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run python suites/tasks/make_data.py")
    lines = path.read_text(encoding="utf-8").splitlines()
    return datasets.Dataset.from_list([json.loads(line) for line in lines if line.strip()])


def load_mc(**_metadata) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {"train": _split("smoke_mc_train.jsonl"), "test": _split("smoke_mc_test.jsonl")}
    )


def load_ppl(**_metadata) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": _split("smoke_ppl_test.jsonl")})
