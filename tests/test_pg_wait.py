"`PgQueue.wait` and `finished_notices`: what an idle worker hears through LISTEN/NOTIFY, read off the connection's socket"
import threading, time
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

def test_other_queue_doesnt_end_the_wait(pg):
    "A job of another queue is heard, but the wait goes on to its timeout and says no"
    with PgQueue(pg, name='a') as w, PgQueue(pg, name='b') as b:
        w.wait(0)
        t0 = time.monotonic(); t = _enqueue_later(pg, 'b', 'other', 0.05)
        assert not w.wait(0.5)
        assert time.monotonic() - t0 >= 0.5
        t.join(); assert b.stats()['queued'] == 1

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
