"""ThreadWorkers wakes when it should: a job that another process enqueues the moment the pool has started is heard (its threads listen before the
go-ahead, not at their first wait), and an idle pool stops at once. Loose bounds only: `poll` is 5 s, a miss would take that long."""
import subprocess, sys, time
import pytest
from concurrency_demo.store import open_queue
from concurrency_demo.threads import ThreadWorkers

pytestmark = pytest.mark.timeout(60)

def double(x): return 2*x

def test_first_job_from_another_process_not_missed(tmp_path):
    db = str(tmp_path/'q.db'); open_queue(db).close()
    enq = f"from concurrency_demo.store import open_queue; q = open_queue({db!r}); print(q.enqueue(21)); q.close()"
    for _ in range(3):
        with ThreadWorkers(db, double, n=2, poll=5) as w, open_queue(db) as q:
            t = time.monotonic()
            id = int(subprocess.run([sys.executable, '-c', enq], capture_output=True, text=True, check=True).stdout)
            while q.get(id).status != 'done' and time.monotonic() - t < 20: time.sleep(0.01)
            assert q.get(id).result == 42 and time.monotonic() - t < 4, time.monotonic() - t

def test_idle_pool_stops_at_once(store):
    "`stop` wakes the idle threads waiting in this process: an idle pool with a 5 s `poll` stops at once, not after its poll (on PostgreSQL, by the queue's wake pipe beside its socket)"
    open_queue(store).close()
    w = ThreadWorkers(store, double, n=2, poll=5).start()
    time.sleep(0.5)  # both threads idle, each in its wait
    t = time.monotonic(); w.stop(timeout=10)
    assert not any(t.is_alive() for t in w.threads)
    assert time.monotonic() - t < 2.5, f'stop took {time.monotonic() - t:.1f}s'
