"`PgQueue.wait` and `finished_notices`: what an idle worker hears through LISTEN/NOTIFY, read off the connection's socket"
import os, subprocess, sys, threading, time
import pytest
from concurrency_demo.pgqueue import PgQueue, pg_database

@pytest.fixture
def pg(pg_server):
    with pg_database(pg_server, 'cdemo_test') as url: yield url

def _enqueue_later(url, name, data, delay=0.2):
    "Enqueue `data` to queue `name` after `delay` seconds, from a thread with a connection of its own"
    def f():
        with PgQueue(url, name=name) as p: p.enqueue(data)
    t = threading.Timer(delay, f); t.start(); return t

def test_wait_hears_its_queue(pg):
    with PgQueue(pg, name='a') as w:
        assert w.wait(0)  # the first call starts listening, and says look once
        t0 = time.monotonic(); t = _enqueue_later(pg, 'a', 'x')
        assert w.wait(10) and time.monotonic() - t0 < 5  # woken by the enqueue, not the timeout
        t.join(); assert w.dequeue().data == 'x'

def _enqueue_elsewhere(url, name, data, delay=0.05):
    "Enqueue `data` to queue `name` after `delay` seconds, from another process (an enqueue in this one pokes its waits)"
    code = f"import time; from concurrency_demo.pgqueue import PgQueue; time.sleep({delay}); PgQueue({url!r}, name={name!r}).enqueue({data!r})"
    return subprocess.Popen([sys.executable, '-c', code])

def test_other_queue_doesnt_end_the_wait(pg):
    "A job of another queue, enqueued by another process, is heard, but the wait goes on to its timeout and says no"
    with PgQueue(pg, name='a') as w, PgQueue(pg, name='b') as b:
        w.wait(0)
        p = _enqueue_elsewhere(pg, 'b', 'other', 0.3)
        time.sleep(0.2); t0 = time.monotonic()  # the other process is up (its imports take a moment): its enqueue comes in the wait
        assert not w.wait(1.5)
        assert time.monotonic() - t0 >= 1.5
        assert p.wait(30) == 0 and b.stats()['queued'] == 1

def test_enqueue_here_or_stop_ends_the_wait_at_once(pg):
    "An enqueue in this process (any queue's), or a pool's stop (`_enqueued`), ends a wait at once with True (look now), as on SQLite"
    from concurrency_demo.store import _enqueued
    with PgQueue(pg, name='a') as w:
        w.wait(0)
        threading.Timer(0.1, _enqueued).start()
        t0 = time.monotonic(); assert w.wait(10) and time.monotonic() - t0 < 5
        _enqueue_later(pg, 'b', 'other', 0.1)  # a thread of this process
        t0 = time.monotonic(); assert w.wait(10) and time.monotonic() - t0 < 5
        assert w.dequeue() is None  # it was another queue's: the look finds nothing, and the next wait goes on
        t0 = time.monotonic(); assert not w.wait(0.3) and time.monotonic() - t0 >= 0.3
        w.close()
        assert w._wake is None  # the pipe is closed with the queue, and off the list of pokes
        _enqueued()

def test_heard_while_busy(pg):
    "A notification that arrives while the connection runs a query is kept (psycopg's backlog), and the next wait returns at once"
    with PgQueue(pg, name='a') as w, PgQueue(pg, name='a') as p:
        w.wait(0)
        p.enqueue('x'); time.sleep(0.1)
        w.stats()  # a query on the waiting connection reads the notification off the socket
        t0 = time.monotonic()
        assert w.wait(10) and time.monotonic() - t0 < 5

def test_finished_notices_kept_by_wait(pg):
    "A job that finishes while its producer's store waits for new jobs: the wait keeps the notice for `finished_notices`"
    with PgQueue(pg, name='a') as w, PgQueue(pg, name='a') as p:
        id = p.enqueue('x'); w.finished_notices(0); w.wait(0)
        p.ack(p.dequeue(), 'ok')
        assert not w.wait(0.3)  # a notice of another channel: not a new job
        assert w.finished_notices(5) == {id}
        assert w.finished_notices(0.2) == set()

def test_queue_dropped_unclosed_lets_go_of_its_wake_pipe(pg):
    "A PgQueue that waited and is dropped without `close` is still collected: its poke leaves `_on_enqueued`, its pipe closes"
    import gc, weakref
    from concurrency_demo.store import _on_enqueued, _enqueued
    n = len(_on_enqueued)
    w = PgQueue(pg, name='a'); w.wait(0); w.wait(0.01)
    assert len(_on_enqueued) == n + 1
    r, ref = w._wake.r, weakref.ref(w)
    w.conn.close(); del w; gc.collect()
    assert ref() is None and len(_on_enqueued) == n
    with pytest.raises(OSError): os.fstat(r)  # closed (the number isn't reused in between: nothing opened since)
    _enqueued()
