"""A batch's prefetched jobs, waiting their turn behind a slow job, keep their leases (the heartbeat holds them) and hear of a
cancel: they are handed back unspent, never taken back by a lease that ran out. Both stores."""
import time
import pytest
from concurrency_demo.store import open_queue
from concurrency_demo.threads import ThreadWorkers

pytestmark = pytest.mark.timeout(120)

def nap(s): time.sleep(s); return s

def test_prefetched_jobs_keep_their_leases(store):
    q = open_queue(store)
    ids = q.enqueue_many([0]*100) + [q.enqueue(0.8)] + q.enqueue_many([0]*100)  # the batch grows on quick jobs, then one waits 0.8 s
    with ThreadWorkers(store, nap, n=1, batch=32, lease=0.3, poll=0.02) as w: assert w.drain(timeout=60)
    jobs = [q.get(i) for i in ids]
    assert all(j.status == 'done' for j in jobs)
    assert [j.id for j in jobs if j.attempts != 1] == []  # none lost its lease waiting: no attempt spent twice
    q.close()

def test_prefetched_job_cancelled_while_waiting(store):
    "A job cancelled while it waits its turn in a batch isn't run: the heartbeat sees the cancel"
    q = open_queue(store)
    with ThreadWorkers(store, nap, n=1, batch=32, poll=0.02) as w:
        for _ in range(5):  # the batch grows only while jobs take under a millisecond: on a loaded machine the slow one may end a batch
            ids = q.enqueue_many([0]*100) + [q.enqueue(1.0)] + q.enqueue_many([0]*100)
            while q.get(ids[100]).status != 'running': time.sleep(0.005)
            waiting = [j.id for j in q.find(status='running', n=100) if j.id > ids[100]]  # claimed with the slow job, behind it
            if waiting: break
            assert w.drain(timeout=60)
        assert waiting, 'the slow job always came last in its batch'
        q.cancel(waiting[0])
        assert w.drain(timeout=60)
    j = q.get(waiting[0])
    assert j.status == 'cancelled' and j.result is None and j.attempts == 1
    assert all(q.get(i).status == 'done' for i in ids if i != waiting[0])
    q.close()
