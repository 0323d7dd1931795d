"""Worker faults (issue "Faults"): poison handlers, unstorable results, a lost database, leaking children, bad numbers.

Every runtime (threads, an event loop, processes) on SQLite and PostgreSQL. The lost-database tests restart a throwaway
PostgreSQL server of their own (`pg_tmp_cluster`), never the shared one. Handlers live at module level, so that
`ProcessWorkers`' children can import them by name.
"""
import asyncio, logging, math, os, threading, time
from collections import Counter
import pytest
from helpers import wait_until
from concurrency_demo.store import open_queue
from concurrency_demo.pgqueue import pg_database, pg_tmp_cluster
from concurrency_demo.threads import ThreadWorkers
from concurrency_demo.aio import AsyncWorkers
from concurrency_demo.procs import ProcessWorkers
from concurrency_demo.worker import Heartbeat, work, wait_drained

pytestmark = pytest.mark.timeout(90)

# ---- handlers --------------------------------------------------------------------------------------------------------

class Poison(BaseException): "A bare `BaseException` subclass, as a careless library might raise"

KINDS = dict(KeyboardInterrupt=KeyboardInterrupt, SystemExit=SystemExit, CancelledError=asyncio.CancelledError, Poison=Poison)

def poisoned(x):
    "Double `x`; a job whose data names a `BaseException` raises it"
    if isinstance(x, str): raise KINDS[x](f'poison {x}')
    time.sleep(0.005)
    return 2*x

async def apoisoned(x):
    if isinstance(x, str): raise KINDS[x](f'poison {x}')
    await asyncio.sleep(0.005)
    return 2*x

def deep(x):
    "A result nested 100,000 lists deep: JSON can't encode it (`RecursionError`)"
    r = []
    for _ in range(100_000): r = [r]
    return r

async def adeep(x): return deep(x)

_leak = []
def leaky(mb):
    "Keep `mb` MB for good, as a leaking library would; return how many jobs this process has run"
    _leak.append(bytearray(int(mb * 2**20)))
    return len(_leak)

def slowly(x): time.sleep(0.02); return 2*x
async def aslowly(x): await asyncio.sleep(0.02); return 2*x

RUNTIMES = dict(threads=lambda url, h, **kw: ThreadWorkers(url, h, n=3, **kw),
                aio=lambda url, h, **kw: AsyncWorkers(url, h, concurrency=3, **kw),
                procs=lambda url, h, **kw: ProcessWorkers(url, h, n=2, **kw))
ASYNC = {poisoned: apoisoned, deep: adeep, slowly: aslowly}

def pool(kind, url, h, **kw): return RUNTIMES[kind](url, ASYNC[h] if kind == 'aio' else h, **kw)

def alive(w):
    "Are all of `w`'s workers still running?"
    if isinstance(w, ThreadWorkers): return all(t.is_alive() for t in w.threads)
    if isinstance(w, AsyncWorkers): return w.thread.is_alive() and not w.finished.is_set()
    return all(p.is_alive() for p in w.procs)

# ---- 1. a handler raising BaseException doesn't take the pool down ---------------------------------------------------------

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_poison_jobs_die_and_the_pool_serves_on(kind, store):
    "Four poison jobs (KeyboardInterrupt, SystemExit, CancelledError, a bare BaseException) among 30: each is charged its attempts and ends dead"
    q = open_queue(store, backoff=0)
    poison = {k: q.enqueue(k, max_attempts=2) for k in KINDS}
    ids = q.enqueue_many(list(range(30)))
    with pool(kind, store, poisoned, poll=0.01, backoff=0) as w:
        assert w.drain(timeout=40)
        assert alive(w)
        late = q.enqueue(100)  # still serving
        wait_until(lambda: q.get(late).status == 'done', timeout=20)
        if kind == 'procs': assert w.restarts == 0
    assert [q.get(i).result for i in ids] == [2*i for i in range(30)]
    for k,jid in poison.items():
        j = q.get(jid)
        assert (j.status, j.attempts) == ('dead', 2), (k, j)
        assert j.error.startswith('Traceback') and j.error.splitlines()[-1].startswith(f'{KINDS[k].__module__}.{k}'.replace('builtins.', '')), j.error
    assert q.stats() == dict(queued=0, running=0, done=31, dead=4, cancelled=0)

def test_serial_ctrl_c_in_the_main_thread_still_releases_and_propagates(tmp_path):
    q = open_queue(tmp_path/'q.db')
    jid = q.enqueue('KeyboardInterrupt')
    with pytest.raises(KeyboardInterrupt): ThreadWorkers(tmp_path/'q.db', poisoned, n=0).start()
    assert (q.get(jid).status, q.get(jid).attempts) == ('queued', 0)

def test_async_stop_still_cancels_and_releases(store):
    "Our own cancellation (at stop) still hands the job back unspent; only a CancelledError the handler raised is its failure"
    q = open_queue(store); jid = q.enqueue(1)
    async def hang(x): await asyncio.sleep(3600)
    w = AsyncWorkers(store, hang, concurrency=2, poll=0.01).start()
    wait_until(lambda: q.stats()['running'] == 1, timeout=10)
    w.stop(timeout=0.1)
    assert (q.get(jid).status, q.get(jid).attempts) == ('queued', 0)

# ---- 2. a result that can't be stored fails the job at once ---------------------------------------------------------------

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_a_result_nested_too_deeply_fails_the_job_at_once(kind, store):
    q = open_queue(store)
    jid = q.enqueue('x', max_attempts=1)
    t = time.monotonic()
    with pool(kind, store, deep, poll=0.01, lease=60) as w: assert w.drain(timeout=30)
    j = q.get(jid)
    assert j.status == 'dead' and 'lease expired' not in j.error
    assert j.error.splitlines()[-1] == 'ValueError: Job result is nested too deeply to encode as JSON'
    assert time.monotonic() - t < 30  # not after the 60 s lease

# ---- 3. a lost database: the workers wait it out, and drain -----------------------------------------------------------------

def done_count(url):
    "How many jobs are done, or `None` while the database can't be reached"
    try:
        with open_queue(url, busy_timeout=2) as q: return q.stats()['done']
    except Exception: return None

def kill_backends(url):
    "Terminate every other connection to `url`'s database: the workers' and their heartbeats'"
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname=current_database() AND pid<>pg_backend_pid()").fetchone()[0]

@pytest.mark.parametrize('kind', list(RUNTIMES))
def test_workers_outlive_a_server_restart_and_killed_backends(kind, cluster, caplog):
    caplog.set_level(logging.INFO)
    with pg_database(cluster, 'cdemo_faults') as url:
        q = open_queue(url); ids = q.enqueue_many(list(range(120))); q.close()
        with pool(kind, url, slowly, poll=0.02, lease=2) as w:
            wait_until(lambda: (done_count(url) or 0) >= 20, timeout=30)
            cluster.restart()
            wait_until(lambda: (done_count(url) or 0) >= 60, timeout=40)
            assert kill_backends(url) >= 1  # the workers' (a heartbeat with nothing to extend may not have reconnected yet)
            wait_until(lambda: done_count(url) == 120, timeout=40)
            assert alive(w)
            if kind == 'procs': assert w.restarts == 0
        q = open_queue(url)
        assert q.stats() == dict(queued=0, running=0, done=120, dead=0, cancelled=0)  # stop() left nothing running
        assert [q.get(i).result for i in ids] == [2*i for i in range(120)]
        q.close()
    claims = Counter(r.threadName for r in caplog.records if 'could not claim' in r.getMessage())
    assert all(n <= 2 for n in claims.values()), claims  # once per outage, not once per poll
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) < 60

def test_heartbeat_survives_a_restart(cluster):
    "The heartbeat keeps extending after the server comes back"
    with pg_database(cluster, 'cdemo_faults') as url:
        q = open_queue(url, lease=1.5); jid = q.enqueue('long'); j = q.dequeue(); q.close()
        hb = Heartbeat(url, every=0.2, lease=1.5).start()
        hb.add(j)
        cluster.restart()
        time.sleep(2)  # longer than the lease: only the heartbeat keeps the job
        assert hb.thread.is_alive()
        with open_queue(url, lease=1.5) as q:
            assert q.get(jid).lease_until > time.time()
            q.ack(j, 'ok')  # still ours
        hb.stop()

def test_outage_is_logged_once_with_backoff_and_recovery(tmp_path, caplog):
    "The claim loop: one error line per outage, waits doubling from poll to a cap, one line when it's back"
    from concurrency_demo.store import StoreUnavailable
    q = open_queue(tmp_path/'q.db', worker='f-0')
    q.enqueue_many([1, 2])
    real,downs = q.dequeue_many,[8]
    def flaky(n, **kw):
        if downs[0]: downs[0] -= 1; raise StoreUnavailable('the database is away')
        return real(n, **kw)
    q.dequeue_many = flaky
    waits = []
    class Stop(threading.Event):
        def wait(self, t=None): waits.append(t); return super().wait(min(t, 0.01))
    stop = Stop()
    caplog.set_level(logging.INFO, 'concurrency_demo.worker')
    work(q, lambda x: x, stop, poll=0.1, done=lambda j,ok: q.stats()['queued'] or stop.set())
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and 'could not claim a job: StoreUnavailable: the database is away' in msgs[0] and 'again' in msgs[1], msgs
    assert q.stats()['done'] == 2

def test_workers_outlive_a_replaced_sqlite_file(tmp_path):
    "The file is replaced under running workers: they notice, and serve the new file's jobs"
    p = tmp_path/'q.db'
    open_queue(p).enqueue_many(list(range(5)))
    with ThreadWorkers(p, slowly, n=2, poll=0.02) as w:
        assert w.drain(timeout=20)
        fresh = tmp_path/'fresh.db'
        with open_queue(fresh) as fq: ids = fq.enqueue_many(list(range(10)))
        for f in (p, p.with_name('q.db-wal'), p.with_name('q.db-shm')): f.unlink(missing_ok=True)  # gone, as `rm q.db*` does...
        os.replace(fresh, p)  # ...and a new file in its place
        wait_until(lambda: open_queue(p).stats()['done'] == 10, timeout=30)
        assert alive(w)
    assert [open_queue(p).get(i).result for i in ids] == [2*i for i in range(10)]

# ---- 4. leaking children are replaced between jobs -------------------------------------------------------------------------

def test_a_child_is_replaced_after_max_jobs_per_child(tmp_path, caplog):
    url = tmp_path/'q.db'
    q = open_queue(url)
    ids = q.enqueue_many([5]*10)
    caplog.set_level(logging.INFO, 'concurrency_demo.procs')
    with ProcessWorkers(url, leaky, n=1, poll=0.02, max_jobs_per_child=3, worker='lk') as w:
        assert w.drain(timeout=40)
        replaced,restarts = w.replaced,w.restarts
    assert q.stats() == dict(queued=0, running=0, done=10, dead=0, cancelled=0)
    assert [q.get(i).result for i in ids] == [1, 2, 3]*3 + [1]  # a fresh process every 3 jobs
    assert (replaced, restarts) == (3, 0)
    planned = [r for r in caplog.records if 'max_jobs_per_child=3' in r.getMessage()]
    assert len(planned) == 3 and all(r.levelno == logging.INFO for r in planned)
    assert not any('exited with code' in r.getMessage() for r in caplog.records)

def test_a_child_is_replaced_over_max_memory_mb(tmp_path, caplog):
    url = tmp_path/'q.db'
    q = open_queue(url)
    ids = q.enqueue_many([40]*6)
    caplog.set_level(logging.INFO, 'concurrency_demo.procs')
    with ProcessWorkers(url, leaky, n=1, poll=0.02, max_memory_mb=150, worker='mem') as w:
        assert w.drain(timeout=40)
        replaced = w.replaced
    assert q.stats()['done'] == 6 and replaced >= 1
    assert max(q.get(i).result for i in ids) < 6  # no process kept leaking through all six
    assert any('max_memory_mb=150' in r.getMessage() for r in caplog.records)

# ---- 5. the core's own numbers refuse inf and nan -----------------------------------------------------------------------

@pytest.mark.parametrize('bad', [math.inf, math.nan, -math.inf])
def test_non_finite_numbers_are_refused(tmp_path, bad):
    p = tmp_path/'q.db'
    for kw in (dict(poll=bad), dict(lease=bad)):
        for make in (lambda: ThreadWorkers(p, abs, **kw), lambda: AsyncWorkers(p, apoisoned, **kw), lambda: ProcessWorkers(p, poisoned, **kw)):
            with pytest.raises(ValueError, match=f'{list(kw)[0]} must be'): make()
    with pytest.raises(ValueError, match='n must be'): ThreadWorkers(p, abs, n=bad)
    with pytest.raises(ValueError, match='concurrency must be'): AsyncWorkers(p, apoisoned, concurrency=bad)
    with pytest.raises(ValueError, match='max_jobs_per_child must be'): ProcessWorkers(p, poisoned, max_jobs_per_child=bad)
    with pytest.raises(ValueError, match='max_memory_mb must be'): ProcessWorkers(p, poisoned, max_memory_mb=bad)
    with pytest.raises(ValueError, match='every must be'): Heartbeat(p, every=bad)
    with pytest.raises(ValueError, match='timeout must be'): wait_drained(p, {}, timeout=bad)
    open_queue(p)
    w = ThreadWorkers(p, abs, n=1, poll=0.01).start()
    with pytest.raises(ValueError, match='timeout must be'): w.drain(timeout=bad)
    with pytest.raises(ValueError, match='timeout must be'): w.stop(timeout=bad)
    with pytest.raises(ValueError, match='timeout must be'): w.join(timeout=bad)
    w.stop()
    a = AsyncWorkers(p, apoisoned, poll=0.01).start()
    with pytest.raises(ValueError, match='timeout must be'): a.stop(timeout=bad)
    a.stop()
