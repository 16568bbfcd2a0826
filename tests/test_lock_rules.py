"""The job-key lock's decisions (moe_schema/locks.py), in one process and fast: who gets the lock,
who waits, what a long wait costs in file descriptors, and that a stopped or failed wait leaves
nothing open. ``flock`` locks belong to an open file, so two ``KeyLock``s on one path in one
process exclude each other as two processes would (tests/test_hostile.py shows it across processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moe_schema.locks import KeyLock


def _fds(path: Path) -> int:
    """Descriptors this process holds open on ``path`` (other files the test process opens meanwhile,
    a log or a pipe, are not counted)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return count


def test_a_free_key_is_taken_and_a_held_one_is_refused_until_released(tmp_path):
    path = tmp_path / "cache" / ".locks" / "k.lock"  # the folders are made with the file
    a, b = KeyLock(path), KeyLock(path)
    assert not a.held
    assert a.try_acquire() and a.held
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600
    assert a.try_acquire()  # a holder asking again keeps it
    assert not b.try_acquire() and not b.held
    a.release()
    assert not a.held
    assert b.try_acquire() and b.held
    b.release()
    b.release()  # twice: nothing to close
    assert path.is_file()  # left in place: removing it under a waiter would let a third run in


def test_shared_holders_admit_each_other_and_exclude_an_exclusive_one(tmp_path):
    path = tmp_path / "k.lock"
    users = [KeyLock(path, shared=True) for _ in range(2)]
    evictor = KeyLock(path)
    assert all(u.try_acquire() for u in users)
    assert not evictor.try_acquire()
    users[0].release()
    assert not evictor.try_acquire()  # one user left still holds it
    users[1].release()
    assert evictor.try_acquire()
    assert not KeyLock(path, shared=True).try_acquire()  # an eviction under way excludes a new user
    evictor.release()


def test_a_run_waiting_on_another_runs_key_holds_one_descriptor_however_long_it_waits(tmp_path):
    """Leaking one descriptor per poll, a run waiting 3 minutes at 0.2 s polls passes 1,024 open files: 1,000 polls here."""
    path = tmp_path / "k.lock"
    holder, waiter = KeyLock(path), KeyLock(path)
    assert holder.try_acquire()
    before = _fds(path)
    polls, seen = [], []

    def stop() -> bool:
        polls.append(1)
        seen.append(_fds(path))
        return len(polls) >= 1000

    assert waiter.acquire(stop=stop, poll_s=0) is False  # stopped: a cancel or Ctrl-C
    assert len(polls) == 1000
    assert before == 1 and max(seen) == min(seen) == 2  # the holder's, and the waiter's opened once for the wait
    assert _fds(path) == before and not waiter.held  # and closed when the wait is given up
    holder.release()


def test_a_wait_ends_with_the_lock_as_soon_as_the_holder_releases(tmp_path):
    path = tmp_path / "k.lock"
    holder, waiter = KeyLock(path), KeyLock(path)
    assert holder.try_acquire()
    polls = []

    def stop() -> bool:
        polls.append(1)
        if len(polls) == 3:
            holder.release()  # the other run stores its record
        return False

    before = _fds(path)
    assert waiter.acquire(stop=stop, poll_s=0) is True and waiter.held
    assert len(polls) == 3 and _fds(path) == before  # the holder's descriptor closed, the waiter's one kept
    assert waiter.acquire() is True  # already held: returns at once, opening nothing
    assert _fds(path) == before
    waiter.release()
    assert _fds(path) == before - 1


def test_a_free_key_is_taken_without_asking_stop_or_sleeping(tmp_path):
    called = []
    lock = KeyLock(tmp_path / "k.lock")
    assert lock.acquire(stop=lambda: called.append(1) or True, poll_s=60) is True  # would sleep a minute
    assert called == [] and lock.held
    lock.release()


def test_the_default_wait_polls_every_fifth_of_a_second(tmp_path, monkeypatch):
    """The poll interval a waiting run sleeps between tries (0.2 s): quick to notice a release."""
    import moe_schema.locks as locks

    path = tmp_path / "k.lock"
    holder = KeyLock(path)
    holder.try_acquire()
    slept = []
    monkeypatch.setattr(locks.time, "sleep", lambda s: slept.append(s))
    assert KeyLock(path).acquire(stop=lambda: len(slept) >= 2) is False
    assert slept == [0.2, 0.2]
    holder.release()


def test_an_interrupted_wait_closes_its_descriptor_and_passes_the_interrupt_on(tmp_path):
    path = tmp_path / "k.lock"
    holder, waiter = KeyLock(path), KeyLock(path)
    holder.try_acquire()
    before = _fds(path)

    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        waiter.acquire(stop=stop, poll_s=0)
    assert _fds(path) == before and not waiter.held
    holder.release()


def test_a_failing_flock_closes_its_descriptor_and_passes_the_error_on(tmp_path, monkeypatch):
    import fcntl

    import moe_schema.locks as locks

    def broken(fd, op):
        raise OSError(9, "flock failed")

    path = tmp_path / "k.lock"
    lock = KeyLock(path)
    before = _fds(path)
    monkeypatch.setattr(locks.fcntl, "flock", broken)
    for take in (lock.try_acquire, lock.acquire):
        with pytest.raises(OSError, match="flock failed"):
            take()
        assert _fds(path) == before and not lock.held
    monkeypatch.setattr(locks.fcntl, "flock", fcntl.flock)


def test_a_refused_try_closes_its_descriptor(tmp_path):
    path = tmp_path / "k.lock"
    holder = KeyLock(path)
    holder.try_acquire()
    before = _fds(path)
    for _ in range(50):
        assert not KeyLock(path).try_acquire()
    assert _fds(path) == before
    holder.release()


def test_the_with_block_holds_the_key_and_frees_it_on_exit(tmp_path):
    path = Path(tmp_path / "k.lock")
    with KeyLock(path) as lock:
        assert lock.held and not KeyLock(path).try_acquire()
    other = KeyLock(path)
    assert not lock.held and other.try_acquire()
    other.release()
