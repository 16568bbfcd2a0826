"""A job a daemon refuses fails with the daemon's reason, once, and is never counted as a worker it
took down (issue 32 §3).

A job whose task folder ships too many files is over the daemon's object bound per request. The
daemon answered with an error it could not give the request's id, the coordinator dropped it, the
heartbeat then said the worker ran nothing, and the job was retried as if its worker had
restarted: "quarantined: took down 3 workers" while the summary said "0 workers lost". Real
daemons (the session's pool) here.
"""

from __future__ import annotations

import hashlib

from fault_jobs import VARIANT

from harness.coordinator import Coordinator, Job
from moe_schema import protocol


def _evaluate(files: int) -> dict:
    shipped = {f"d/{i}.txt": b"" for i in range(files)} | {"t.yaml": b"task: many\n"}
    return {"kind": "evaluate", "variant": dict(VARIANT), "task": {
        "name": "many", "path": "/nowhere/t.yaml", "digest": hashlib.sha256(b"x").hexdigest()[:24], "files": shipped}}


def test_a_job_whose_task_folder_has_too_many_files_fails_with_that_reason_and_no_crash(daemon_pool):
    """60,000 files: over the bound. The job fails once with the bound and the file count; nothing
    is quarantined or lost, and both workers run the next jobs."""
    jobs = [Job("many", _evaluate(60_000)), Job("a", {"kind": "probe", "variant": dict(VARIANT),
                                                      "probe": {"name": "test-stall", "params": {"seconds": 0.1}}})]
    outcomes: dict = {}
    with Coordinator(daemon_pool.endpoints, heartbeat_s=0.25, timeout_s=10.0) as c:
        assert all("error" not in h for h in c.hello(timeout_s=60))
        summary = c.run(jobs, lambda job, o: outcomes.__setitem__(job.key, o), deadline_s=120)
    many = outcomes["many"]
    assert many["status"] == "failed" and many["attempts"] == 1, many
    assert many["error"].startswith("parse error: frame of "), many
    assert many["error"].endswith(f"decodes into more than {protocol.MAX_REQUEST_OBJECTS} objects, the limit per "
                                  "request frame (the job ships its task folder's 60,001 files, two objects each)")
    assert outcomes["a"]["status"] == "ok", outcomes["a"]
    assert summary.quarantined == [] and summary.lost == [] and (summary.ok, summary.failed) == (1, 1)


def test_a_task_folder_under_the_bound_reaches_the_daemon(daemon_pool):
    """The neighbouring case: 1,000 files travel; the daemon reads the job and fails it for a reason
    of the job's own (its variant's checkpoint does not exist), not for the frame."""
    outcomes: dict = {}
    with Coordinator(daemon_pool.endpoints[:1], heartbeat_s=0.25, timeout_s=10.0) as c:
        c.hello(timeout_s=60)
        summary = c.run([Job("few", _evaluate(1_000))], lambda job, o: outcomes.__setitem__(job.key, o),
                        deadline_s=120)
    few = outcomes["few"]
    assert few["status"] == "failed" and few["attempts"] == 1 and not few["error"].startswith("parse error"), few
    assert summary.lost == [] and summary.quarantined == []
