"""ProcessWorkers wakes when it should: an idle pool stops at once however long its `poll`, and a job enqueued the moment the
pool has started is picked up without waiting out a `poll`. Loose bounds only: `poll` is 5 s, a miss would take that long."""
import time
import pytest
from concurrency_demo.store import open_queue
from concurrency_demo.procs import ProcessWorkers, cpu_job

pytestmark = pytest.mark.timeout(60)

def test_idle_pool_stops_at_once(store):
    "The parent's word on each child's pipe ends an idle child's wait, so `stop` doesn't wait out `poll` (on PostgreSQL too: the child's queue is poked)"
    open_queue(store).close()
    w = ProcessWorkers(store, cpu_job, n=2, poll=5).start()
    time.sleep(0.5)  # both children idle, each in its wait
    t = time.monotonic(); w.stop(timeout=10)
    took = time.monotonic() - t
    assert not any(p.is_alive() for p in w.procs)
    assert took < 2.5, f'stop took {took:.1f}s'

def test_first_job_not_missed(store):
    "A job enqueued right after `start` returns is heard, though the children are just starting to wait"
    open_queue(store).close()
    for _ in range(3):
        with ProcessWorkers(store, cpu_job, n=2, poll=5) as w, open_queue(store) as q:
            t = time.monotonic(); id = q.enqueue(dict(fn='fib', n=5))
            while q.get(id).status != 'done' and time.monotonic() - t < 20: time.sleep(0.01)
            assert q.get(id).result == 5 and time.monotonic() - t < 2.5
