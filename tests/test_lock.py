"""The committed lock (requirements/lock.txt) and pyproject.toml's ranges agree.

README's ``tox`` installs the lock; a range changed in pyproject.toml without a refreshed lock
would test something other than what users install, so this fails until the lock is recompiled
(the command is at the top of the lock).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
VLLM_LOCK = ROOT / "requirements" / "vllm-lock.txt"  # tox -e vllm: the [vllm] extra's own lock
LLAMACPP_LOCK = ROOT / "requirements" / "llamacpp-lock.txt"  # tox -e llamacpp: the [llamacpp] extra's own lock
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_pins(text: str) -> dict[str, Version]:
    pins = {}
    for line in text.splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def disagreements(reqs: list[Requirement], pins: dict[str, Version], env: dict) -> list[str]:
    """One line per requirement the lock leaves out or pins outside its range (markers that do not
    apply to ``env``, the lock's platform, are skipped)."""
    out = []
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate({**env, "extra": "dev"}):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            out.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            out.append(f"{req}: the lock pins {pins[name]}")
    return out


LOCK_ENV = {**default_environment(), "python_version": "3.11", "platform_system": "Linux",
            "platform_machine": "x86_64", "sys_platform": "linux"}


def test_every_range_in_pyproject_is_pinned_inside_it_by_the_lock():
    problems = disagreements(requirements(), lock_pins(LOCK.read_text()), LOCK_ENV)
    assert not problems, ("requirements/lock.txt disagrees with pyproject.toml; recompile it with the "
                          "command at its top:\n" + "\n".join(problems))


def test_the_vllm_lock_pins_the_vllm_extra_and_the_rest_inside_pyproject():
    problems = disagreements(requirements("vllm"), lock_pins(VLLM_LOCK.read_text()), LOCK_ENV)
    assert not problems, ("requirements/vllm-lock.txt disagrees with pyproject.toml; refresh it with the "
                          "commands at its top:\n" + "\n".join(problems))
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(lock_pins(VLLM_LOCK.read_text()))


def test_the_llamacpp_lock_pins_the_llamacpp_extra_and_the_rest_inside_pyproject():
    problems = disagreements(requirements("llamacpp"), lock_pins(LLAMACPP_LOCK.read_text()), LOCK_ENV)
    assert not problems, ("requirements/llamacpp-lock.txt disagrees with pyproject.toml; recompile it with the "
                          "command at its top:\n" + "\n".join(problems))


def test_the_check_notices_a_range_change_without_a_refreshed_lock():
    pins = lock_pins(LOCK.read_text())
    moved = [Requirement(f"transformers>{pins['transformers']}"), Requirement("some-new-package>=1")]
    assert disagreements(moved, pins, LOCK_ENV) == [
        f"transformers>{pins['transformers']}: the lock pins {pins['transformers']}",
        "some-new-package>=1: not in the lock"]


def test_the_lock_pins_every_package_exactly():
    lines = [ln.strip() for ln in LOCK.read_text().splitlines()]
    deps = [ln for ln in lines if ln and not ln.startswith(("#", "-"))]
    assert deps and all(PIN.match(ln) for ln in deps), [ln for ln in deps if not PIN.match(ln)][:5]


@pytest.mark.parametrize("name", ["torch", "transformers", "lm-eval", "pyzmq", "msgpack"])
def test_the_lock_holds_the_packages_the_harness_is_built_on(name):
    assert canonicalize_name(name) in lock_pins(LOCK.read_text())
