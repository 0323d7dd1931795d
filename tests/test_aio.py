"""Background tasks, limits, timeouts and `AsyncWorkers` (issue 5), offline against the fake LLM server.

The `AsyncWorkers` tests take `store` (tests/conftest.py), so they run on every store the queue supports. Timings are
only checked with loose bounds: the machine is shared.
"""
import asyncio, gc, logging, threading, time, weakref
from collections import Counter

import pytest
from openai import APITimeoutError
from concurrency_demo.aio import AsyncWorkers, Background, RateLimiter, amap
from concurrency_demo.store import FakeClock, open_queue
from concurrency_demo.fakeai import FakeAI, fake_reply, fake_stats
from concurrency_demo.llm import AskJob, aask, aclient, llm_config

pytestmark = pytest.mark.timeout(90)
LOG = 'concurrency_demo.aio'

def loop_errors(loop):
    "Collect what `loop`'s exception handler is told: where asyncio reports destroyed tasks and unretrieved errors"
    msgs = []
    loop.set_exception_handler(lambda l, ctx: msgs.append(ctx['message']))
    return msgs

# ---- background tasks --------------------------------------------------------------------------------------------

def test_background_tasks_survive_gc_and_all_finish():
    async def go():
        errs = loop_errors(asyncio.get_running_loop())
        waiters = weakref.WeakSet()  # nothing else holds the futures the tasks wait on
        async def wait(i):
            f = asyncio.get_running_loop().create_future(); waiters.add(f)
            return i, await f
        bg,done = Background(),[]
        for i in range(100): bg.spawn(wait(i)).add_done_callback(lambda t: done.append(t.result()))
        await asyncio.sleep(0)
        for _ in range(5): gc.collect(); await asyncio.sleep(0)
        alive = len(waiters)
        for f in list(waiters): f.set_result('go')
        assert await bg.join(timeout=5)
        gc.collect(); await asyncio.sleep(0)
        return alive, sorted(i for i,_ in done), errs
    alive,done,errs = asyncio.run(go())
    assert alive == 100 and done == list(range(100)) and errs == []

def test_plain_create_task_can_vanish():
    "The trap `Background` avoids: the same tasks, unreferenced, are destroyed while pending"
    async def go():
        errs = loop_errors(asyncio.get_running_loop())
        waiters = weakref.WeakSet()
        async def wait():
            f = asyncio.get_running_loop().create_future(); waiters.add(f); await f
        for _ in range(20): asyncio.create_task(wait())
        await asyncio.sleep(0); gc.collect()
        return len(waiters), errs
    alive,errs = asyncio.run(go())
    assert alive == 0 and 'Task was destroyed but it is pending!' in errs

def test_a_failing_background_task_is_logged_never_lost(caplog):
    async def go():
        errs = loop_errors(asyncio.get_running_loop())
        async def boom(): await asyncio.sleep(0.01); raise ValueError('bad thing')
        bg = Background()
        for i in range(3): bg.spawn(boom(), name=f'job-{i}')
        await bg.join()
        gc.collect(); await asyncio.sleep(0)
        return errs
    with caplog.at_level(logging.ERROR, LOG): errs = asyncio.run(go())
    msgs = sorted(r.getMessage() for r in caplog.records if r.name == LOG)
    assert msgs == [f'Background task job-{i} failed: ValueError: bad thing' for i in range(3)]
    assert all(r.exc_info for r in caplog.records if r.name == LOG)
    assert not any('never retrieved' in m for m in errs)

def test_background_cancel_and_join_timeout():
    async def go():
        bg = Background()
        ts = [bg.spawn(asyncio.sleep(10)) for _ in range(5)]
        assert not await bg.join(timeout=0.05)
        await bg.cancel()
        return len(bg), all(t.cancelled() for t in ts)
    assert asyncio.run(go()) == (0, True)

# ---- limits ------------------------------------------------------------------------------------------------------

def test_amap_never_exceeds_its_cap_and_keeps_order():
    async def go():
        live = peak = 0
        async def f(i):
            nonlocal live, peak
            live += 1; peak = max(peak, live)
            await asyncio.sleep(0.001 * (i % 7))
            live -= 1
            return i * i
        res = await amap(f, range(200), concurrency=7)
        return res, peak
    res,peak = asyncio.run(go())
    assert res == [i*i for i in range(200)] and peak == 7  # more tasks than slots: the cap is reached, never passed

def test_amap_timeout_errors_and_cancellation():
    async def slow(x): await asyncio.sleep(x); return x
    t = time.monotonic()
    res = asyncio.run(amap(slow, [0.01, 5, 0.02], concurrency=3, timeout=0.2, return_exceptions=True))
    assert res[0] == 0.01 and res[2] == 0.02 and isinstance(res[1], TimeoutError) and time.monotonic() - t < 2
    cancelled = []
    async def part(i):
        try: await asyncio.sleep(0.01 if i == 0 else 5)
        except asyncio.CancelledError: cancelled.append(i); raise
        raise ValueError(i)
    with pytest.raises(ExceptionGroup): asyncio.run(amap(part, range(4), concurrency=4))
    assert sorted(cancelled) == [1, 2, 3]
    with pytest.raises(ValueError, match='concurrency'): asyncio.run(amap(slow, [1], concurrency=0))

def test_rate_limiter_with_a_fake_clock():
    clk = FakeClock(0)
    async def sleep(s): clk.tick(s)
    async def go():
        lim,starts = RateLimiter(10, per=60, clock=clk, sleep=sleep),[]
        for i in range(35):
            if i % 4 == 0: clk.tick(7)  # calls arrive spread out, not only in one burst
            async with lim: starts.append(clk())
        return starts
    starts = asyncio.run(go())
    assert len(starts) == 35 and starts == sorted(starts)
    assert all(sum(s <= t < s + 60 for t in starts) <= 10 for s in starts)   # never more than 10 in any minute
    assert max(sum(s <= t < s + 60 for t in starts) for s in starts) == 10   # and the limit is used, not just respected
    with pytest.raises(ValueError): RateLimiter(0)

def test_rate_limiter_is_first_come_first_served():
    clk = FakeClock(0)
    async def sleep(s): clk.tick(s); await asyncio.sleep(0)
    async def go():
        lim,order = RateLimiter(2, per=1, clock=clk, sleep=sleep),[]
        async def one(i):
            async with lim: order.append(i)
        await asyncio.gather(*[one(i) for i in range(6)])
        return order
    assert asyncio.run(go()) == list(range(6))

def test_rate_limiter_keeps_the_server_from_refusing():
    with FakeAI(latency=0, rpm=600, rpm_window=1) as url:
        async def go():
            lim = RateLimiter(10, per=1.5)
            async with aclient(llm_config('fake', url, max_retries=0)) as cli:
                async def one(i):
                    async with lim: return await aask(f'q{i}', cli)
                return await asyncio.gather(*[one(i) for i in range(15)])
        assert len(asyncio.run(go())) == 15
        assert fake_stats(url)['rpm_limited'] == 0

# ---- timeouts and cancellation -----------------------------------------------------------------------------------

def test_hung_call_ends_at_its_timeout():
    with FakeAI(latency=0, hang_rate=1) as url:
        async def go():
            async with aclient(llm_config('fake', url, timeout=0.3, max_retries=0)) as cli:
                t = time.monotonic()
                with pytest.raises(APITimeoutError): await aask('q', cli)
                sdk = time.monotonic() - t
                t = time.monotonic()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2): await aask('q', cli, timeout=60)
                return sdk, time.monotonic() - t
        sdk,aio = asyncio.run(go())
    assert 0.3 <= sdk < 3 and 0.2 <= aio < 3

def test_cancelling_a_fan_out_cancels_its_children():
    with FakeAI(latency=0, hang_rate=1) as url:
        async def go():
            async with aclient(llm_config('fake', url, timeout=60, max_retries=0)) as cli:
                fan = asyncio.create_task(amap(lambda p: aask(p, cli), [str(i) for i in range(12)], concurrency=12))
                deadline = time.monotonic() + 10
                while fake_stats(url)['in_flight'] < 12 and time.monotonic() < deadline: await asyncio.sleep(0.05)
                before = fake_stats(url)['in_flight']
                fan.cancel()
                with pytest.raises(asyncio.CancelledError): await fan
                left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            return before, left
        before,left = asyncio.run(go())
        deadline = time.monotonic() + 3
        while fake_stats(url)['in_flight'] and time.monotonic() < deadline: time.sleep(0.05)
        assert before == 12 and left == [] and fake_stats(url)['in_flight'] == 0

# ---- AsyncWorkers ------------------------------------------------------------------------------------------------

async def double(x): await asyncio.sleep(0.01); return x * 2

def test_drains_and_acks(store):
    q = open_queue(store)
    ids = q.enqueue_many(list(range(200)))
    with AsyncWorkers(store, double, concurrency=20, poll=0.01) as w:
        assert w.drain(timeout=30)
    assert q.stats() == dict(queued=0, running=0, done=200, dead=0, cancelled=0)
    assert [q.get(i).result for i in ids[:5]] == [0, 2, 4, 6, 8]
    s = w.stats()
    assert s['processed'] == 200 and s['failed'] == 0 and s['running'] == 0 and list(s['workers'].values()) == [200]

def test_most_in_flight_is_the_cap(store):
    live = peak = 0
    async def h(x):
        nonlocal live, peak
        live += 1; peak = max(peak, live)
        await asyncio.sleep(0.02)
        live -= 1
    open_queue(store).enqueue_many(list(range(100)))
    with AsyncWorkers(store, h, concurrency=8, poll=0.01) as w: w.drain(timeout=30)
    assert peak == 8

def test_database_calls_stay_off_the_loop(store):
    "Every database call runs on one thread of its own: the thread that opened the workers' Queue, not the loop's"
    loop_threads = set()
    async def h(x): loop_threads.add(threading.get_ident()); return x
    open_queue(store).enqueue_many(list(range(20)))
    w = AsyncWorkers(store, h, concurrency=5, poll=0.01).start()
    w.drain(timeout=30)
    owner = w.q._owner[0] if hasattr(w.q, '_owner') else None
    w.stop()
    assert len(loop_threads) == 1 and owner is not None and owner not in loop_threads | {threading.get_ident()}

def test_failures_are_stored_and_logged_with_the_job_id(store, caplog):
    async def picky(x):
        if x % 5 == 0: raise ValueError(f'{x} is a multiple of 5')
        return x
    q = open_queue(store)
    ids = q.enqueue_many(list(range(1, 21)), max_attempts=1)
    with caplog.at_level(logging.WARNING, LOG):
        with AsyncWorkers(store, picky, concurrency=4, poll=0.01) as w: w.drain(timeout=30)
    assert q.stats() == dict(queued=0, running=0, done=16, dead=4, cancelled=0)
    bad = q.get(ids[4])
    assert bad.status == 'dead' and bad.error.startswith('Traceback') and bad.error.splitlines()[-1] == 'ValueError: 5 is a multiple of 5'
    errs = [r for r in caplog.records if r.name == LOG and r.levelno == logging.ERROR]
    assert len(errs) == 4 and all(r.exc_info for r in errs)
    assert f'Job {ids[4]} failed (attempt 1 of 1): ValueError: 5 is a multiple of 5' in [r.getMessage() for r in errs]
    assert w.stats()['failed'] == 4 and w.stats()['processed'] == 16

def test_a_result_that_cannot_be_stored_fails_the_job(store):
    async def h(x): return object()
    q = open_queue(store); jid = q.enqueue('x', max_attempts=1)
    with AsyncWorkers(store, h, concurrency=2, poll=0.01) as w: w.drain(timeout=10)
    assert q.get(jid).status == 'dead' and 'JSON' in q.get(jid).error

def steal(url, job_id):
    "Make job `job_id`'s claim invalid, as another worker's claim would"
    q = open_queue(url)
    if url.startswith('postgresql://'): q.conn.execute("UPDATE job SET token='someone-else' WHERE id=%s", (job_id,))
    else: q.db.execute("UPDATE job SET token='someone-else' WHERE id=?", [job_id])
    q.close()

def test_lease_lost_is_a_warning_not_a_crash(store, caplog):
    q = open_queue(store)
    ids = q.enqueue_many(list(range(10)))
    async def stolen(x):
        if x == 0: steal(store, ids[0])  # another claim takes this job while we work on it
        await asyncio.sleep(0.01)
        return x
    with caplog.at_level(logging.WARNING, LOG):
        with AsyncWorkers(store, stolen, concurrency=3, poll=0.01) as w:
            deadline = time.monotonic() + 10
            while q.stats()['done'] < 9 and time.monotonic() < deadline: time.sleep(0.02)
    assert q.stats()['done'] == 9 and w.stats()['processed'] == 9 and w.stats()['failed'] == 1
    assert any(r.levelno == logging.WARNING and f'Job {ids[0]}' in r.getMessage() and 'no longer held' in r.getMessage()
               for r in caplog.records if r.name == LOG)

def test_stop_lets_in_flight_finish_within_the_timeout(store):
    q = open_queue(store); q.enqueue_many([0.2]*5)
    async def nap(s): await asyncio.sleep(s); return 'done'
    w = AsyncWorkers(store, nap, concurrency=5, poll=0.01).start()
    time.sleep(0.05); w.stop(timeout=5)
    assert q.stats() == dict(queued=0, running=0, done=5, dead=0, cancelled=0)

def test_stop_cancels_and_releases_what_runs_past_the_timeout(store, caplog):
    q = open_queue(store); ids = q.enqueue_many(list(range(10)))
    async def hang(x): await asyncio.sleep(3600)
    w = AsyncWorkers(store, hang, concurrency=10, poll=0.01).start()
    deadline = time.monotonic() + 5
    while q.stats()['running'] < 10 and time.monotonic() < deadline: time.sleep(0.01)
    t = time.monotonic(); w.stop(timeout=0.3); took = time.monotonic() - t
    assert 0.3 <= took < 3 and not w.thread.is_alive()
    assert q.stats() == dict(queued=10, running=0, done=0, dead=0, cancelled=0)
    assert all(q.get(i).attempts == 0 for i in ids)  # released, not failed: the attempt isn't spent
    assert w.stats()['running'] == 0

def test_a_handler_that_ignores_cancellation_still_leaves_no_job_running(store, caplog):
    q = open_queue(store); q.enqueue_many([1, 2])
    async def stubborn(x):
        for _ in range(3):
            try: await asyncio.sleep(1); return x
            except asyncio.CancelledError: pass
    w = AsyncWorkers(store, stubborn, concurrency=2, poll=0.01).start()
    deadline = time.monotonic() + 5
    while q.stats()['running'] < 2 and time.monotonic() < deadline: time.sleep(0.01)
    with caplog.at_level(logging.WARNING, LOG):
        t = time.monotonic(); w.stop(timeout=0.1); took = time.monotonic() - t
    assert took < 4 and q.stats()['running'] == 0

def test_heartbeat_keeps_long_jobs(store):
    "Jobs longer than the lease are extended every lease/3, so no other claim takes them"
    q = open_queue(store); ids = q.enqueue_many([1.0, 1.0])
    async def nap(s): await asyncio.sleep(s); return 'ok'
    with AsyncWorkers(store, nap, concurrency=2, poll=0.01, lease=0.4, reclaim_every=0.05) as w:
        time.sleep(0.6)
        thief = open_queue(store, reclaim_every=0)
        assert thief.dequeue() is None  # the leases are alive
        thief.close()
        w.drain(timeout=10)
    assert [q.get(i).status for i in ids] == ['done', 'done'] and [q.get(i).attempts for i in ids] == [1, 1]

def test_serial_switch_and_async_entry_points(store):
    q = open_queue(store); q.enqueue_many(list(range(6)))
    order = []
    async def h(x): order.append(x); await asyncio.sleep(0.001); return x
    w = AsyncWorkers(store, h, concurrency=0, poll=0.01).start()  # no loop here: runs in the caller, until empty
    assert order == list(range(6)) and w.stats()['processed'] == 6 and q.stats()['done'] == 6
    q.enqueue_many(list(range(10, 16)))
    async def in_app():
        with pytest.raises(RuntimeError, match='await w.run'): AsyncWorkers(store, h, concurrency=0).start()
        async with AsyncWorkers(store, h, concurrency=3, poll=0.01) as w2:
            assert await w2.adrain(timeout=10)
            with pytest.raises(RuntimeError, match='await w.astop'): w2.stop()
            with pytest.raises(RuntimeError, match='await w.adrain'): w2.drain()
        return w2
    w2 = asyncio.run(in_app())
    assert q.stats() == dict(queued=0, running=0, done=12, dead=0, cancelled=0) and w2.stats()['processed'] == 6
    q.enqueue_many([20, 21])
    w3 = asyncio.run(AsyncWorkers(store, h, concurrency=4, poll=0.01).run())
    assert w3.stats()['processed'] == 2 and q.stats()['queued'] == 0

def test_start_until_empty_then_join(store):
    open_queue(store).enqueue_many(list(range(30)))
    w = AsyncWorkers(store, double, concurrency=10, poll=0.01).start(until_empty=True)
    w.join(timeout=20)
    assert not w.thread.is_alive() and w.stats()['processed'] == 30
    w.stop()  # already stopped: a no-op

def test_bad_arguments(store):
    def sync_handler(x): return x
    with pytest.raises(TypeError, match='async'): AsyncWorkers(store, sync_handler)
    with pytest.raises(ValueError, match='concurrency'): AsyncWorkers(store, double, concurrency=-1)
    for poll in (0, True, 'fast'):
        with pytest.raises(ValueError, match='poll'): AsyncWorkers(store, double, poll=poll)
    with pytest.raises(TypeError, match='queue='): AsyncWorkers(store, double, name='llm')
    w = AsyncWorkers(store, double, poll=0.01).start()
    with pytest.raises(RuntimeError, match='already started'): w.start()
    w.stop()

def test_llm_jobs_with_askjob(store):
    with FakeAI(latency=0.01) as url:
        cfg = llm_config('fake', url)
        q = open_queue(store); ids = q.enqueue_many([{'prompt': f'doc {i}'} for i in range(60)])
        with AsyncWorkers(store, AskJob(cfg), concurrency=15, poll=0.01) as w: w.drain(timeout=30)
        assert [q.get(i).result for i in ids[:3]] == [fake_reply(f'doc {i}', model=cfg.model) for i in range(3)]
        assert fake_stats(url)['max_in_flight'] <= 15 and fake_stats(url)['calls'] == 60

def test_faults_every_job_settles_and_calls_match_the_policy(store):
    """500 jobs against 10% 500s, 5% 429s (Retry-After: 1) and 2% hangs; timeout 1 s, SDK max_retries=2, max_attempts=3.

    Every job ends done or dead with a reason; the run's time is bounded by the policy; the server received one first
    call per job attempt and no call beyond the SDK's second retry, so nothing stacked a retry loop on the SDK's."""
    max_retries,max_attempts,timeout = 2,3,1.0
    with FakeAI(latency=0.01, error_rate=0.1, rate_429=0.05, retry_after=1, hang_rate=0.02, seed=7) as url:
        cfg = llm_config('fake', url, timeout=timeout, max_retries=max_retries)
        q = open_queue(store, backoff=0.05)
        ids = q.enqueue_many([{'prompt': f'job {i}'} for i in range(500)], max_attempts=max_attempts)
        t = time.monotonic()
        with AsyncWorkers(store, AskJob(cfg), concurrency=50, poll=0.01, backoff=0.05) as w: assert w.drain(timeout=80)
        secs = time.monotonic() - t
        server = fake_stats(url)
    rows = [q.get(i) for i in ids]
    status = Counter(j.status for j in rows)
    assert sum(status.values()) == 500 and set(status) <= {'done', 'dead'}
    assert all(j.error and j.error.strip() for j in rows if j.status == 'dead')
    assert all(j.result == fake_reply(j.data['prompt'], seed=7, model=cfg.model) for j in rows if j.status == 'done')
    attempts = sum(j.attempts for j in rows)
    assert server['by_retry']['0'] == attempts                       # one first call per job attempt
    assert set(server['by_retry']) <= {str(i) for i in range(max_retries + 1)}  # never past the SDK's own retries
    assert server['calls'] == sum(server['by_retry'].values()) <= attempts * (max_retries + 1)
    assert server['hangs'] > 0 and server['errors'] > 0 and server['rate_limited'] > 0
    # bound: each job's worst case is max_attempts x (tries x (timeout + Retry-After)) plus backoff; jobs overlap 50 at a time
    worst_job = max_attempts * ((max_retries + 1) * timeout + max_retries * 1.0) + max_attempts * 0.05
    assert secs < worst_job * 500 / 50 and secs < 60
    assert w.stats()['processed'] == status['done']

def test_serves_the_queue_it_names(store):
    "`queue=` picks the queue (`name=` is refused); `worker` is the worker id its claims carry, and nothing is called `name`"
    a,b = open_queue(store, name='llm'),open_queue(store, name='other')
    ids = a.enqueue_many(list(range(5))); b.enqueue_many([1, 2])
    with AsyncWorkers(store, double, concurrency=3, queue='llm', poll=0.01, worker='loop-1') as w:
        assert (w.queue, w.worker) == ('llm', 'loop-1') and not hasattr(w, 'name')
        assert w.drain(timeout=20)
    assert [a.get(i).result for i in ids] == [0, 2, 4, 6, 8] and {a.get(i).worker for i in ids} == {'loop-1'}
    assert b.stats()['queued'] == 2 and w.stats()['workers'] == {'loop-1': 5}
