"""Tasks (issue "Tasks"): the registry, arguments checked at enqueue, results, retry rules, progress and timeouts,
on both stores and in every runtime. The tasks live in `task_defs`, so that worker processes can import them."""
import asyncio, logging, time
import pytest
from concurrency_demo import Tasks, JobFailed, current_job
from concurrency_demo.tasks import Retry, NoRetry
from concurrency_demo.store import open_queue
from concurrency_demo.threads import ThreadWorkers
from concurrency_demo.aio import AsyncWorkers
from concurrency_demo.procs import ProcessWorkers
import task_defs as td

pytestmark = pytest.mark.timeout(120)
quiet = logging.getLogger('tests.quiet'); quiet.disabled = True

RUNTIMES = dict(threads=lambda t, **kw: ThreadWorkers(t.url, t, n=2, poll=0.01, log=quiet, **kw),
                aio=lambda t, **kw: AsyncWorkers(t.url, t, concurrency=4, poll=0.01, log=quiet, **kw),
                procs=lambda t, **kw: ProcessWorkers(t.url, t, n=2, poll=0.01, log=quiet, **kw))

@pytest.fixture
def tasks(store): return td.make(store)

def test_usage_as_in_the_issue(store):
    "The names users type: Tasks, @tasks.task (bare and with options), enqueue, result, aenqueue/aresult"
    tasks = Tasks(store)
    @tasks.task
    def resize(path: str, width: int = 800) -> str: return f'{path}@{width}'
    @tasks.task(queue='llm', timeout=60, max_attempts=5, retry_on=(TimeoutError,))
    async def summarize(text: str) -> str:
        current_job().progress(0.5, 'halfway')
        if current_job().cancelled: return 'stopped'
        return text[:4]
    @tasks.periodic(every=3600)
    def prune_old_uploads(): pass
    @tasks.periodic(cron='0 3 * * *')
    def nightly(): pass
    assert {'resize', 'summarize', 'prune_old_uploads', 'nightly'} <= set(tasks.registry)
    h = resize.enqueue('a.png', width=400)
    with ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet): assert h.result(timeout=10) == 'a.png@400'
    async def main():
        h = await summarize.aenqueue('long text')
        async with AsyncWorkers(tasks.url, tasks, queue='llm', poll=0.01, log=quiet): return await h.aresult(timeout=10), h
    res, h2 = asyncio.run(main())
    assert res == 'long' and h2.job().progress == 0.5 and h2.job().note == 'halfway' and h2.job().max_attempts == 5

def test_arguments_checked_at_enqueue_and_nothing_written(tasks):
    q = open_queue(tasks.url)
    for bad in (lambda: tasks['add'].enqueue(), lambda: tasks['noop'].enqueue(1),
                lambda: tasks['add'].enqueue({1, 2}), lambda: tasks['add'].enqueue(1, scale=object())):
        with pytest.raises(TypeError): bad()
    async def abad(): await tasks['add'].aenqueue()
    with pytest.raises(TypeError): asyncio.run(abad())
    assert q.stats() == dict(queued=0, running=0, done=0, dead=0, cancelled=0) and q.recent() == []

def test_arguments_round_trip(tasks):
    h = tasks['add'].enqueue(1, 2, 3, 4, scale=10, x=5)
    assert h.job().data == {'task': 'add', 'args': [1, 2, 3, 4], 'kwargs': {'scale': 10, 'x': 5}}
    with ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet): assert h.result(10) == 105

def test_duplicate_names_and_bad_options(tasks):
    with pytest.raises(ValueError, match='already registered'): tasks.task(td.add)
    with pytest.raises(TypeError, match='options'): tasks['add'].options(queue='x')
    with pytest.raises(ValueError): Tasks(tasks.url, timeout=float('nan'))

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_every_runtime_runs_the_registry(kind, tasks):
    hs = [tasks['add'].enqueue(i, 1) for i in range(10)] + [tasks['aadd'].enqueue(5, 5)]
    with RUNTIMES[kind](tasks):
        assert [h.result(30) for h in hs] == [i + 1 for i in range(10)] + [10]

def test_sync_and_async_tasks_in_one_async_pool(tasks):
    async def main():
        hs = [await tasks['aadd'].aenqueue(i, i) for i in range(5)] + [await tasks['add'].aenqueue(i, i) for i in range(5)]
        async with AsyncWorkers(tasks.url, tasks, concurrency=10, poll=0.01, log=quiet):
            return await asyncio.gather(*(h.aresult(10) for h in hs))
    assert asyncio.run(main()) == [2*i for i in range(5)] * 2

def test_unknown_task_and_non_task_data_fail_at_once(tasks):
    q = open_queue(tasks.url)
    a, b = q.enqueue({'task': 'nope', 'args': [], 'kwargs': {}}), q.enqueue([1, 2])
    ok = tasks['quick'].enqueue(7)
    with ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet) as w:
        assert ok.result(10) == 7
        w.drain(timeout=10)
    for i in (a, b):
        j = q.get(i)
        assert (j.status, j.attempts) == ('dead', 1) and 'NoRetry' in j.error
    assert "unknown task 'nope'" in q.get(a).error

def test_result_done_dead_and_unfinished(tasks):
    done, dead = tasks['quick'].enqueue(3), tasks['boom'].enqueue('broken')
    later = tasks['quick'].options(delay=60).enqueue(4)
    with ThreadWorkers(tasks.url, tasks, n=2, poll=0.01, log=quiet):
        assert done.result(10) == 3
        with pytest.raises(JobFailed, match='Broken: broken') as e: dead.result(10)
        assert e.value.job.id == dead.id and 'Traceback' in e.value.error
        t = time.monotonic()
        with pytest.raises(TimeoutError, match="didn't finish within 0.3s"): later.result(timeout=0.3)
        assert time.monotonic() - t < 2
    async def amain():
        with pytest.raises(TimeoutError): await later.aresult(timeout=0.2)
        with pytest.raises(JobFailed): await dead.aresult(timeout=5)
        return await done.aresult(timeout=5)
    assert asyncio.run(amain()) == 3

def test_retry_on_and_retry(tasks):
    q = open_queue(tasks.url)
    flaky, broken, twice = tasks['boom'].enqueue('flaky'), tasks['boom'].enqueue('broken'), tasks['later'].enqueue('k')
    with ThreadWorkers(tasks.url, tasks, n=2, poll=0.01, log=quiet, backoff=0.01) as w:
        assert twice.result(10) == 'ran twice'
        for h in (flaky, broken):
            with pytest.raises(JobFailed): h.result(30)
    assert q.get(flaky.id).attempts == 3      # retried up to max_attempts: Flaky is in retry_on
    assert q.get(broken.id).attempts == 1     # dead at once: Broken is not
    assert q.get(twice.id).attempts == 1      # Retry didn't count the first run
    assert 'Broken: broken' in q.get(broken.id).error

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_progress_read_back(kind, tasks):
    h, ah = tasks['report'].enqueue(4), tasks['areport'].enqueue(1)
    with RUNTIMES[kind](tasks):
        assert h.result(30) == 4 and ah.result(30) == 1
    assert (h.job().progress, h.job().note) == (1.0, 'step 4')
    assert (ah.job().progress, ah.job().note) == (0.25, 'a quarter')
    with pytest.raises(LookupError): current_job()

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_a_hung_task_is_stopped_at_its_timeout_while_others_go_on(kind, tasks, caplog):
    caplog.set_level(logging.WARNING)
    hung, ahung = tasks['hang'].enqueue(5), tasks['ahang'].enqueue(5)
    quick = [tasks['quick'].enqueue(i) for i in range(20)]
    t = time.monotonic()
    with RUNTIMES[kind](tasks) as w:
        assert [h.result(30) for h in quick] == list(range(20))
        for h in (hung, ahung):
            with pytest.raises(JobFailed, match='ran past its timeout'): h.result(30)
        took = time.monotonic() - t
        if kind == 'procs':  # the child that held the stuck thread made way for a new one
            from helpers import wait_until
            wait_until(lambda: w.replaced >= 1 and all(p.is_alive() for p in w.procs), timeout=20)
    assert took < 4, took  # at the deadline (0.5 s), not after the 5 s the tasks take
    assert hung.status == ahung.status == 'dead'

def test_a_thousand_waiters_share_one_query_per_look(tasks):
    "1,000 pending aresult waiters: all answered, with fewer queries than half the waiters (each covers hundreds)"
    from concurrency_demo import store
    calls = []
    orig = store.Store.finished
    def counted(self, ids): calls.append(len(ids)); return orig(self, ids)
    store.Store.finished = counted
    try:
        async def main():
            hs = [await tasks['quick'].aenqueue(i) for i in range(1000)]
            async with AsyncWorkers(tasks.url, tasks, concurrency=50, poll=0.01, log=quiet):
                return await asyncio.gather(*(h.aresult(60) for h in hs))
        assert asyncio.run(main()) == list(range(1000))
    finally: store.Store.finished = orig
    assert len(calls) < 500 and max(calls) > 100, (len(calls), max(calls, default=0))  # one query serves hundreds of waiters

def test_a_result_in_another_process_wakes_the_waiter(tasks):
    "Jobs run by worker processes: the waiter sees them through the database (SQLite's data_version, or a query on PostgreSQL)"
    hs = [tasks['noop'].enqueue() for _ in range(20)]
    with RUNTIMES['procs'](tasks):
        assert [h.result(30) for h in hs] == [None]*20

# ---- cancelling running jobs -------------------------------------------------------------------------------------

CANCELLABLE = dict(threads='spin', aio='await_forever', procs='sleep_hard')
ARGS = dict(spin=(100_000,), await_forever=(), sleep_hard=(60,))

def _running(w):
    if isinstance(w, AsyncWorkers): return len(w.tasks)
    return w.stats()['running']

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_cancelling_a_running_job_stops_it_within_a_second(kind, store):
    from helpers import wait_until
    tasks = td.make_cancellable(store)
    name = CANCELLABLE[kind]
    h = tasks[name].enqueue(*ARGS[name])
    with RUNTIMES[kind](tasks) as w:
        wait_until(lambda: h.status == 'running', timeout=30)
        wait_until(lambda: _running(w) == 1, timeout=10)
        t = time.monotonic()
        h.cancel()
        with pytest.raises(JobFailed) as e: h.result(5)
        assert type(e.value).__name__ == 'JobCancelled'
        wait_until(lambda: _running(w) == 0, timeout=5, every=0.01)  # the worker let go of it
        took = time.monotonic() - t
        assert took < 1, took
        if kind == 'procs': wait_until(lambda: w.replaced >= 1 and all(p.is_alive() for p in w.procs), timeout=20)
        assert tasks['quick'].enqueue(5).result(30) == 5  # the pool goes on
    j = h.job()
    assert j.status == 'cancelled' and j.result is None
    assert open_queue(store).stats()['cancelled'] == 1

def test_store_cancel_running_and_retry(store):
    from concurrency_demo.store import Cancelled
    q = open_queue(store)
    i = q.enqueue('x'); j = q.dequeue()
    q.cancel(i)
    with pytest.raises(Cancelled, match='was cancelled'): q.ack(j, 1)
    assert q.get(i).status == 'cancelled' and q.cancelled([i, i + 1]) == {i} and q.finished([i]) == {i}
    with pytest.raises(ValueError, match='is cancelled, not queued or running'): q.cancel(i)
    q.retry(i)
    assert q.get(i).status == 'queued' and q.stats() == dict(queued=1, running=0, done=0, dead=0, cancelled=0)

# ---- following a job: aevents --------------------------------------------------------------------------------------

def test_fifty_streams_follow_a_job_in_another_process_with_one_feed(tasks):
    "50 `aevents` streams on a job run by a worker process: each ends with the same `done` event and its result, in order, and the feed reads every watched row in one query per change, not one per stream"
    h = tasks['report'].enqueue(3)
    async def follow(): return [e async for e in h.aevents()]
    async def main():
        with RUNTIMES['procs'](tasks): return await asyncio.wait_for(asyncio.gather(*(follow() for _ in range(50))), 30)
    r0 = tasks.feed().reads
    streams = asyncio.run(main())
    assert all(s[-1] == dict(id=h.id, status='done', progress=1.0, note='step 3', result=3) for s in streams)
    order = ['queued', 'running', 'done']
    for s in streams:  # statuses only move forward, progress only grows, and each event is a change
        st = [order.index(e['status']) for e in s]; pr = [e['progress'] or 0 for e in s]
        assert st == sorted(st) and pr == sorted(pr) and all(a != b for a,b in zip(s, s[1:])), s
    assert tasks.feed().reads - r0 < 50, tasks.feed().reads - r0

def test_events_of_a_job_that_isnt_there(tasks):
    "A handle whose job doesn't exist (never did, or was purged): `aevents` raises `KeyError` naming it"
    from concurrency_demo.tasks import Handle
    async def main(): return [e async for e in Handle(tasks, 10**9).aevents()]
    with pytest.raises(KeyError, match='No job with id 1000000000'): asyncio.run(main())
