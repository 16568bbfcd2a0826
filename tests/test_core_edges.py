"""Edges of the core that mutation testing found unpinned: the evaluation window at exactly
max_length, a report made twice being the same report, results.jsonl with values JSON lacks, and
the wire's error replies and key folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.pairdiff import pair_diffs
from harness.store import Store
from moe_schema import protocol as p
from workers.evaluation.batching import window


def test_a_continuation_of_exactly_max_length_fits_and_one_more_does_not():
    ctx, cont = window([1, 2, 3], [4, 5, 6, 7], max_length=4)
    assert (ctx, cont) == ((3,), (4, 5, 6, 7))  # one context token is always kept
    with pytest.raises(ValueError, match="continuation of 5 tokens exceeds max_length 4"):
        window([1], [2, 3, 4, 5, 6], max_length=4)
    with pytest.raises(ValueError, match="^a log-likelihood request needs a non-empty context and continuation$"):
        window([], [1], max_length=4)


def test_the_same_run_gives_the_same_intervals_every_time():
    from test_merge_seeds import run_of

    docs = lambda vals: [{"doc_id": i, "acc": float(x)} for i, x in enumerate(vals)]  # noqa: E731
    samples = {"moe": docs([1, 0, 1, 1, 0] * 20), "dense": docs([0, 1, 0, 1, 0] * 20)}
    run = run_of({"moe": 1000, "dense": 1000}, samples=samples)
    first, second = pair_diffs(run, "active"), pair_diffs(run, "active")
    assert [r.diff for r in first] == [r.diff for r in second]


def test_results_jsonl_writes_values_json_has_no_type_for(tmp_path):
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
    store.put("k", {"key": "k", "kind": "train", "status": "ok", "train": {}, "env": {"where": Path("/x/y")}})
    out = store.write_results_jsonl(["k", "absent"])
    assert out.read_text() == '{"key": "k", "kind": "train", "status": "ok", "train": {}, "env": {"where": "/x/y"}}\n'


def test_an_error_reply_without_a_message_raises_with_an_empty_one():
    with pytest.raises(p.RemoteError) as info:
        p.raise_for_error(p.parse_reply(p.pack({"jsonrpc": "2.0", "id": 1, "error": {"code": p.BUSY}})))
    assert info.value.message == "" and info.value.code == p.BUSY and info.value.data is None


def test_server_keys_name_the_missing_client_keys_then_load(tmp_path):
    import zmq.auth

    zmq.auth.create_certificates(tmp_path, "server")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'authorized'}: no client public keys"):
        p.server_keys(tmp_path)
    (tmp_path / "authorized").mkdir()
    zmq.auth.create_certificates(tmp_path / "authorized", "client")
    secret_file = tmp_path / "server.key_secret"
    with pytest.raises(ValueError, match=rf"^{secret_file}: a secret readable by others \(mode 0644\); "
                                         rf"`chmod 600 {secret_file}`$"):
        p.server_keys(tmp_path)  # pyzmq writes secrets with the umask's mode: refused
    secret_file.chmod(0o600)
    public, secret, authorized = p.server_keys(tmp_path)
    assert (public, secret) == zmq.auth.load_certificate(tmp_path / "server.key_secret")
    assert authorized == str(tmp_path / "authorized")


def OK_RECORD(key: str) -> dict:  # the smallest ok record the store takes (moe_schema.result.check_record)
    return {"key": key, "kind": "train", "status": "ok", "train": {}}


def test_without_the_shared_cache_the_run_folder_alone_says_what_is_done(tmp_path):
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache", use_cache=False)
    store.put("ok", OK_RECORD("ok"))
    store.put("bad", {"key": "bad", "kind": "train", "status": "failed", "error": "boom"})
    assert store.done("ok") == OK_RECORD("ok") and store.done("bad") is None
    assert not (tmp_path / "cache").exists()  # --no-cache writes nothing shared
    nested = Store(tmp_path / "a" / "b" / "run", cache_dir=tmp_path / "c" / "d", use_cache=True)
    nested.put("k", OK_RECORD("k"))  # folders made as needed, temporary files beside the target
    assert (tmp_path / "c" / "d" / "k.json").is_file() and not list((tmp_path / "c" / "d").glob(".*"))
