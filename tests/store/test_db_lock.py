"""Writers to one SQLite file queue on WriteLock instead of SQLite's sleeping busy handler."""

import multiprocessing
import time

from astroclassify.store.db import WriteLock


def _hold(path, held, seconds):
    lock = WriteLock(path)
    lock.acquire()
    held.set()
    time.sleep(seconds)
    lock.release()


def test_a_writer_in_another_process_waits_and_is_woken_when_the_lock_is_free(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    held = ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path / "db.write-lock"), held, 0.3))
    other.start()
    assert held.wait(30)
    lock = WriteLock(str(tmp_path / "db.write-lock"))
    t0 = time.monotonic()
    lock.acquire()
    waited = time.monotonic() - t0
    lock.release()
    other.join()
    assert 0.15 < waited < 0.29 + 0.1  # waited for the holder, and not much longer


def test_a_session_holds_the_lock_from_its_first_write_until_its_transaction_ends(tmp_path):
    from astroclassify.store import open_store
    from astroclassify.store.tables import ApiKey

    def free(lock: WriteLock) -> bool:
        if lock._thread_lock.acquire(blocking=False):
            lock._thread_lock.release()
            return True
        return False

    with open_store(tmp_path) as store:
        lock = WriteLock.for_database(str(tmp_path / "astroclassify.db"))
        with store.session() as session:
            session.query(ApiKey).all()
            assert free(lock)  # reading takes nothing
            session.add(ApiKey(name="alice", prefix="a", key_hash="x" * 64))
            session.flush()
            assert not free(lock)  # from the first write...
            session.commit()
            assert free(lock)  # ...until the transaction ends
            session.add(ApiKey(name="bob", prefix="b", key_hash="y" * 64))
            session.flush()
        assert free(lock)  # closing without a commit releases it too
