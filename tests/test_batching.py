"Batched claims and acks inside the runtimes change nothing a user sees: priority order, each job fenced and acked or failed on its own, progress, cancel"
import asyncio, threading, time
import pytest
from concurrency_demo.store import open_queue, LeaseLost, Cancelled
from concurrency_demo.threads import ThreadWorkers
from concurrency_demo.aio import AsyncWorkers
from concurrency_demo.worker import current_job

def test_ack_each_fences_each_job(store):
    "One transaction, each job on its own: a job whose claim was lost (or cancelled) is left alone, the others are acked"
    with open_queue(store) as q:
        q.enqueue_many(['a', 'b', 'c'])
        a,b,c = q.dequeue_many(3)
        b.token = 'not-mine'
        q.cancel(c.id)
        errs = q.ack_each([a, b, c], [1, 2, 3])
        assert errs[0] is None and isinstance(errs[1], LeaseLost) and isinstance(errs[2], Cancelled)
        assert [q.get(j.id).status for j in (a, b, c)] == ['done', 'running', 'cancelled']
        assert q.get(a.id).result == 1

def test_batched_threads_keep_priority_order(store):
    "One thread claiming up to 32 at once still runs jobs highest priority first"
    with open_queue(store) as q:
        for i in range(200): q.enqueue(i, priority=i % 7)
    seen = []
    ThreadWorkers(store, seen.append, n=0, batch=32).start()
    assert len(seen) == 200
    assert [o % 7 for o in seen] == sorted((o % 7 for o in seen), reverse=True)

def test_batched_outcomes_are_each_their_own(store):
    "In a batch, a failing job fails alone and the rest are acked; progress is stored"
    def h(x):
        current_job().progress(0.5, 'half')
        if x == 3: raise ValueError('three')
        return x * 10
    with open_queue(store) as q: ids = q.enqueue_many(list(range(10)), max_attempts=1)
    with ThreadWorkers(store, h, n=1, batch=32) as w: assert w.drain(30)
    with open_queue(store) as q:
        js = [q.get(i) for i in ids]
        assert [j.status for j in js] == ['done']*3 + ['dead'] + ['done']*6
        assert [j.result for j in js if j.status == 'done'] == [x*10 for x in range(10) if x != 3]
        assert {(j.progress, j.note) for j in js} == {(0.5, 'half')}
    assert w.stats()['processed'] == 9 and w.stats()['failed'] == 1

def test_batched_async_acks(store):
    "AsyncWorkers acks the tasks that end together in one transaction: every result stored, a failure alone"
    async def h(x):
        if x == 5: raise ValueError('five')
        return x
    with open_queue(store) as q: ids = q.enqueue_many(list(range(100)), max_attempts=1)
    with AsyncWorkers(store, h, concurrency=20) as w: assert w.drain(30)
    with open_queue(store) as q:
        st = [q.get(i).status for i in ids]
        assert st.count('done') == 99 and st[5] == 'dead'
    assert w.stats()['processed'] == 99

def test_cancel_still_reaches_a_running_job_in_a_batch(store):
    "A long job claimed with quick ones is still told it was cancelled, and its outcome isn't stored"
    started,saw = threading.Event(),[]
    def h(x):
        if x == 'long':
            started.set()
            end = time.monotonic() + 10
            while not current_job().cancelled and time.monotonic() < end: time.sleep(0.01)
            saw.append(current_job().cancelled)
        return x
    with open_queue(store) as q: q.enqueue_many(['q1', 'q2', 'long', 'q3'])
    with ThreadWorkers(store, h, n=1, batch=32) as w:
        assert started.wait(10)
        with open_queue(store) as q:
            long = next(j for j in q.recent(10) if j.data == 'long')
            q.cancel(long.id)
        assert w.drain(30)
    assert saw == [True]
    with open_queue(store) as q: assert sorted(j.status for j in q.recent(10)) == ['cancelled', 'done', 'done', 'done']
