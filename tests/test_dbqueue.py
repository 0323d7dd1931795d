"""System tests for the job queue (issues 3 and 9): processes, crashes, leases, retries and bad input.

Every test takes `store` (tests/conftest.py), a fresh queue URL, and runs once per store: SQLite and PostgreSQL share
one interface, so they share one set of tests (the PostgreSQL server is CI's `CDEMO_PG_DSN`, or a throwaway one). Worker processes are started with `spawn` and open their own queue
with `open_queue(url)`, as every runtime must.
"""
import math, multiprocessing as mp, os, random, signal, time
from dataclasses import asdict
from pathlib import Path

import pytest
from concurrency_demo.store import FakeClock, Job, LeaseLost, Store, missing_dialect, open_queue, statuses

ctx = mp.get_context('spawn')

def run_procs(targets, timeout=60):
    "Start one spawned process per `(fn, args)` in `targets`; return each one's result, in order"
    res = ctx.Queue()
    ps = [ctx.Process(target=_call, args=(i, fn, args, res), daemon=True) for i,(fn,args) in enumerate(targets)]
    for p in ps: p.start()
    out = dict(res.get(timeout=timeout) for _ in ps)
    for p in ps: p.join(timeout)
    return [out[i] for i in range(len(ps))]

def _call(i, fn, args, res): res.put((i, fn(*args)))

def integrity(url):
    "The store's own consistency check: SQLite's `PRAGMA integrity_check`; PostgreSQL's amcheck on the table and its indexes"
    q = open_queue(url)
    if not url.startswith('postgresql://'): return q.db.q("PRAGMA integrity_check")[0]['integrity_check']
    c = q.conn
    c.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    bad = c.execute("SELECT * FROM verify_heapam('job')").fetchall()
    c.execute("""SELECT bt_index_check(i.indexrelid, true) FROM pg_index i WHERE i.indrelid='job'::regclass""").fetchall()
    return 'ok' if not bad else bad

def snapshot(q, ids):
    "Everything a bad call could change: the counts, and every job's row"
    return q.stats(), [asdict(q.get(i)) for i in ids]

# ---------------------------------------------------------------------------------------------------------------------
# Four processes drain 20,000 jobs

def _drain(url, start, ready):
    "Drain `url` in single claims and batches of varying size; return the ids this process acknowledged"
    q, done, rng = open_queue(url), [], random.Random(os.getpid())
    ready.release(); start.wait(30)  # all four at the line before any starts: a late spawn mustn't find the queue drained
    while True:
        n = rng.choice([1, 10, 50])
        if n == 1:
            j = q.dequeue()
            if j is None: break
            q.ack(j, q.worker); done.append(j.id)
        else:
            js = q.dequeue_many(n)
            if not js: break
            q.ack_many(js, [q.worker]*len(js)); done += [j.id for j in js]
    return q.worker, done

def test_four_processes_drain(store):
    "4 processes drain 20,000 jobs: none lost, none acknowledged twice, each acked by the worker the table names"
    n = 20_000
    q = open_queue(store)
    ids = q.enqueue_many(range(n))
    start, ready = ctx.Event(), ctx.Semaphore(0)
    res = ctx.Queue()
    ps = [ctx.Process(target=_call, args=(i, _drain, (store, start, ready), res), daemon=True) for i in range(4)]
    for p in ps: p.start()
    for p in ps: assert ready.acquire(timeout=60), 'a worker process never came up'
    start.set()
    got = [res.get(timeout=90)[1] for _ in ps]
    for p in ps: p.join(10)
    acked = [i for _,d in got for i in d]
    assert len(acked) == n and sorted(acked) == sorted(ids)   # 0 lost, 0 twice
    assert all(d for _,d in got), 'every process took part'
    assert q.stats() == dict(queued=0, running=0, done=n, dead=0, cancelled=0)
    by = {i: w for w,d in got for i in d}
    for i in random.sample(ids, 500): assert q.get(i).result == by[i] and q.get(i).attempts == 1

# ---------------------------------------------------------------------------------------------------------------------
# A worker killed with SIGKILL at random moments

def _slow_worker(url, name, lease, holding):
    "Work forever: claim, 'work' a few ms, ack; set `holding` once the first job is claimed"
    q = open_queue(url, worker=name, lease=lease, reclaim_every=0.05)
    while True:
        j = q.dequeue()
        if j is None: time.sleep(0.005); continue
        holding.set()
        time.sleep(random.uniform(0, 0.004))
        try: q.ack(j, name)
        except LeaseLost: pass

def test_sigkill_redelivery(store):
    "A worker holding a job is SIGKILLed 20 times: every job still finishes, nothing stays `running`, store intact"
    lease, n = 0.5, 300
    q = open_queue(store, lease=lease, reclaim_every=0.05)
    ids = q.enqueue_many(range(n), max_attempts=100)
    for k in range(20):
        holding = ctx.Event()
        p = ctx.Process(target=_slow_worker, args=(store, f'victim{k}', lease, holding), daemon=True)
        p.start()
        assert holding.wait(30), 'the worker never claimed a job'
        time.sleep(random.uniform(0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
    # a survivor finishes the rest, taking back each lease the dead left behind
    deadline = time.monotonic() + 60
    while q.stats()['done'] < n and time.monotonic() < deadline:
        j = q.dequeue()
        if j is None: time.sleep(0.02)
        else: q.ack(j, 'survivor')
    jobs = [q.get(i) for i in ids]
    assert q.stats() == dict(queued=0, running=0, done=n, dead=0, cancelled=0)
    redelivered = [j for j in jobs if j.attempts > 1]
    assert len(redelivered) >= 5, f'only {len(redelivered)} jobs were redelivered: the kills missed'
    assert all(j.lease_until is None and j.token is None for j in jobs)
    assert integrity(store) == 'ok'

# ---------------------------------------------------------------------------------------------------------------------
# A live lease is never handed to another worker

def _holder(url, got, hold):
    "Claim the first job and keep it for `hold` seconds with heartbeats, then ack it"
    q = open_queue(url, worker='holder', lease=2, reclaim_every=0.05)
    j = q.dequeue()
    got.set()
    end = time.monotonic() + hold
    while time.monotonic() < end: time.sleep(0.2); q.extend(j)
    q.ack(j, 'holder')
    return j.id

def _poller(url, name, got, secs):
    "Claim everything claimable for `secs` seconds; return the ids claimed"
    q = open_queue(url, worker=name, lease=2, reclaim_every=0.05)
    got.wait(30)
    end, ids = time.monotonic() + secs, []
    while time.monotonic() < end:
        for j in q.dequeue_many(5): q.ack(j, name); ids.append(j.id)
        time.sleep(0.01)
    return ids

def test_live_lease_never_stolen(store):
    "While a worker keeps extending its 2 s lease for 3 s, three busy workers never get its job"
    q = open_queue(store)
    held = q.enqueue('held', priority=10)
    others = q.enqueue_many(range(50))
    got = ctx.Event()
    res = run_procs([(_holder, (store, got, 3))] + [(_poller, (store, f'p{i}', got, 3.2)) for i in range(3)])
    assert res[0] == held
    taken = [i for ids in res[1:] for i in ids]
    assert held not in taken and sorted(taken) == others
    j = q.get(held)
    assert (j.status, j.attempts, j.worker, j.result) == ('done', 1, 'holder', 'holder')

def test_lease_boundaries(store):
    "With a fake clock: the job is held up to the very end of its lease, and an extension moves that end"
    clk = FakeClock()
    a = open_queue(store, lease=10, clock=clk, reclaim_every=0)
    b = open_queue(store, lease=10, clock=clk, reclaim_every=0)
    jid = a.enqueue('x')
    j = a.dequeue(worker='a')
    clk.tick(10)
    assert b.dequeue(worker='b') is None      # lease_until == now: still held
    a.extend(j, 5)
    clk.tick(5)
    assert b.dequeue(worker='b') is None
    clk.tick(0.01)
    j2 = b.dequeue(worker='b')                 # expired: another worker may take it, as a new attempt
    assert (j2.id, j2.attempts, j2.worker) == (jid, 2, 'b')
    with pytest.raises(LeaseLost): a.ack(j)
    b.ack(j2, 'b')
    assert a.get(jid).result == 'b'

# ---------------------------------------------------------------------------------------------------------------------
# Retries: dead after max_attempts, backoff delays

def test_always_failing_ends_dead(store):
    "A job whose handler always raises is `dead` after `max_attempts`, with the last attempt's error"
    clk = FakeClock()
    q = open_queue(store, clock=clk, backoff=1)
    jid = q.enqueue('poison', max_attempts=4)
    q.enqueue('fine')
    attempts = 0
    while q.get(jid).status != 'dead':
        j = q.dequeue()
        if j is None: clk.tick(0.5); continue
        if j.data == 'fine': q.ack(j); continue
        attempts += 1
        try: raise ValueError(f'boom on attempt {j.attempts}')
        except ValueError as e: q.fail(j, e)
        assert attempts <= 4
    d = q.get(jid)
    assert (d.status, d.attempts, attempts) == ('dead', 4, 4)
    assert d.error.startswith('Traceback') and d.error.splitlines()[-1] == 'ValueError: boom on attempt 4'
    assert (d.token, d.lease_until) == (None, None)
    clk.tick(10_000)
    assert q.dequeue() is None and q.stats() == dict(queued=0, running=0, done=1, dead=1, cancelled=0)

def test_crashing_job_ends_dead(store):
    "A job whose worker dies every time (its lease expires) is `dead` after `max_attempts` too, and says why"
    clk = FakeClock()
    q = open_queue(store, clock=clk, lease=5, reclaim_every=0)
    jid = q.enqueue('crasher', max_attempts=2)
    for _ in range(2): assert q.dequeue(worker='doomed').id == jid; clk.tick(6)
    assert q.dequeue() is None
    d = q.get(jid)
    assert (d.status, d.attempts) == ('dead', 2) and 'lease expired (worker doomed)' in d.error

def test_backoff_delays(store):
    "Retry n waits backoff·2^(n-1), capped, times a jitter in [0.5, 1]; the job is invisible until then"
    clk = FakeClock()
    q = open_queue(store, clock=clk, backoff=2, backoff_cap=5)
    jid = q.enqueue('flaky', max_attempts=6)
    waits = []
    for n in range(1, 6):
        j = q.dequeue()
        assert (j.id, j.attempts) == (jid, n)
        q.fail(j, 'nope')
        wait = q.get(jid).run_at - clk()
        waits.append(wait)
        assert 0.5*min(5, 2*2**(n-1)) - 1e-9 <= wait <= min(5, 2*2**(n-1)) + 1e-9
        clk.tick(wait - 0.01)
        assert q.dequeue() is None              # not yet
        clk.tick(0.01)
    j = q.dequeue(); q.fail(j, 'last')
    assert q.get(jid).status == 'dead'
    assert len(set(waits)) > 1, 'jitter: the waits are not all equal'

def test_delay_and_priority(store):
    "A delayed job stays invisible until its delay has passed; higher priority goes first"
    clk = FakeClock()
    q = open_queue(store, clock=clk)
    q.enqueue('later', delay=30); q.enqueue('low'); q.enqueue('high', priority=3)
    assert [j.data for j in q.dequeue_many(10)] == ['high', 'low']
    clk.tick(29.9); assert q.dequeue() is None
    clk.tick(0.1);  assert q.dequeue().data == 'later'

# ---------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error, and nothing changed

def _fake_job(jid):
    "A job that looks claimed, with a token no claim ever gave"
    return Job(id=jid, queue='default', data=None, status='running', priority=0, attempts=1, max_attempts=3, run_at=0.,
               lease_until=1e12, worker='w', token='feedfacefeedface', key=None, result=None, error=None, created_at=0., updated_at=0.)

bad_inputs = {  # name: (call(q, held, done), exception, text the message must contain)
    'data-set':           (lambda q,h,d: q.enqueue({1, 2}), TypeError, 'set'),
    'data-object':        (lambda q,h,d: q.enqueue({'f': object()}), TypeError, 'object'),
    'batch-one-bad':      (lambda q,h,d: q.enqueue_many([1, 2, {3}]), TypeError, 'set'),
    'result-not-json':    (lambda q,h,d: q.ack(h, {1}), TypeError, 'set'),
    'results-not-json':   (lambda q,h,d: q.ack_many([h], [{1}]), TypeError, 'Job result'),
    'data-over-1MiB':     (lambda q,h,d: q.enqueue('x'*2**20), ValueError, 'max_size'),
    'data-over-cap':      (lambda q,h,d: q.reopen(max_size=100).enqueue('x'*100), ValueError, 'max_size=100'),
    'result-over-cap':    (lambda q,h,d: q.ack(h, 'x'*2**20), ValueError, 'max_size'),
    'delay-negative':     (lambda q,h,d: q.enqueue(1, delay=-1), ValueError, 'delay'),
    'delay-text':         (lambda q,h,d: q.enqueue(1, delay='soon'), ValueError, 'delay'),
    'delay-nan':          (lambda q,h,d: q.enqueue(1, delay=math.nan), ValueError, 'delay'),
    'delay-batch':        (lambda q,h,d: q.enqueue_many([1, 2], delay=-0.5), ValueError, 'delay'),
    'lease-negative':     (lambda q,h,d: q.dequeue(lease=-1), ValueError, 'lease'),
    'lease-text':         (lambda q,h,d: q.dequeue_many(3, lease='1'), ValueError, 'lease'),
    'lease-extend':       (lambda q,h,d: q.extend(h, lease=-5), ValueError, 'lease'),
    'lease-open':         (lambda q,h,d: q.reopen(lease=-1), ValueError, 'lease'),
    'max_attempts-0':     (lambda q,h,d: q.enqueue(1, max_attempts=0), ValueError, 'max_attempts'),
    'max_attempts-neg':   (lambda q,h,d: q.enqueue(1, max_attempts=-2), ValueError, 'max_attempts'),
    'max_attempts-text':  (lambda q,h,d: q.enqueue(1, max_attempts='3'), ValueError, 'max_attempts'),
    'max_attempts-float': (lambda q,h,d: q.enqueue_many([1], max_attempts=2.5), ValueError, 'max_attempts'),
    'ack-done':           (lambda q,h,d: q.ack(d), LeaseLost, 'no longer held'),
    'ack-wrong-token':    (lambda q,h,d: q.ack(_fake_job(h.id)), LeaseLost, 'no longer held'),
    'ack_many-one-lost':  (lambda q,h,d: q.ack_many([h, d], [1, 2]), LeaseLost, 'no longer held'),
    'fail-done':          (lambda q,h,d: q.fail(d, 'x'), LeaseLost, 'no longer held'),
    'extend-done':        (lambda q,h,d: q.extend(d), LeaseLost, 'no longer held'),
    'release-done':       (lambda q,h,d: q.release(d), LeaseLost, 'no longer held'),
    'get-unknown':        (lambda q,h,d: q.get(10**9), KeyError, str(10**9)),
    'ack-unknown':        (lambda q,h,d: q.ack(_fake_job(10**9)), KeyError, str(10**9)),
    'fail-unknown':       (lambda q,h,d: q.fail(_fake_job(10**9), 'x'), KeyError, str(10**9)),
    'cancel-done':        (lambda q,h,d: q.cancel(d.id), ValueError, 'is done, not queued or running'),
    'cancel-unknown':     (lambda q,h,d: q.cancel(10**9), KeyError, str(10**9)),
    'retry-done':         (lambda q,h,d: q.retry(d.id), ValueError, 'is done, not dead'),
    'name-empty':         (lambda q,h,d: q.reopen(name=''), ValueError, 'name'),
    'n-zero':             (lambda q,h,d: q.dequeue_many(0), ValueError, 'n must'),
    'prune-negative':     (lambda q,h,d: q.prune(older_than=-1), ValueError, 'older_than'),
    'results-length':     (lambda q,h,d: q.ack_many([h], [1, 2]), ValueError, 'results'),
    'recent-negative':    (lambda q,h,d: q.recent(-1), ValueError, 'n must'),
    'recent-text':        (lambda q,h,d: q.recent('5'), ValueError, 'n must'),
    'busy_timeout-neg':   (lambda q,h,d: q.reopen(busy_timeout=-1), ValueError, 'busy_timeout'),
}

@pytest.mark.parametrize('case', bad_inputs)
def test_bad_input(store, case):
    "Each bad input raises the named error, with a message saying what was wrong, and leaves the store unchanged"
    call, exc, text = bad_inputs[case]
    clk = FakeClock()
    q = open_queue(store, clock=clk)
    q.reopen = lambda **kw: open_queue(store, clock=clk, **kw)
    ids = q.enqueue_many(['a', 'b', 'c'])
    d = q.dequeue(); q.ack(d, 'ok')
    h = q.dequeue()
    before = snapshot(q, ids)
    with pytest.raises(exc) as e: call(q, h, d)
    assert text in str(e.value)
    assert snapshot(q, ids) == before
    if exc is not LeaseLost: q.ack(h, 'still held')   # the claim survived the bad call

def test_missing_location(store, tmp_path):
    "A queue in a place that doesn't exist is refused with an error that says so, and nothing is created"
    bad = missing_location(store, tmp_path)
    with pytest.raises(Exception) as e: open_queue(bad)
    assert 'does not exist' in str(e.value)
    if '://' not in bad: assert not Path(bad).parent.exists()

def missing_location(url, tmp_path):
    "A location like `url` whose folder (SQLite) or database (PostgreSQL) doesn't exist"
    if url.startswith('postgresql://'): return url.rsplit('/', 1)[0] + '/cdemo_no_such_db'
    return str(tmp_path/'no'/'such'/'dir'/'q.db')

# ---------------------------------------------------------------------------------------------------------------------
# Reading every queue: `recent` and `counts` (what the console and `cdemo stats` show)

def test_recent_and_counts(store):
    "`recent` lists the newest jobs of every queue, newest first; `counts` every queue's jobs per status, all statuses present"
    llm, cpu = open_queue(store, name='llm'), open_queue(store, name='cpu')
    assert llm.recent() == [] and llm.counts() == {}
    a = llm.enqueue_many(['p1', 'p2', 'p3'])
    b = cpu.enqueue('primes')
    llm.ack(llm.dequeue(), 'answer')
    j = llm.dequeue(); llm.fail(j, 'boom')
    rec = cpu.recent(3)
    assert [x.id for x in rec] == [b, a[2], a[1]] and [x.queue for x in rec] == ['cpu', 'llm', 'llm']
    assert all(isinstance(x, Job) for x in rec) and rec[0].data == 'primes'
    assert [x.id for x in llm.recent()] == [b, *reversed(a)] and llm.recent(0) == []
    assert llm.get(a[0]).result == 'answer'
    assert cpu.counts() == dict(cpu=dict(queued=1, running=0, done=0, dead=0, cancelled=0), llm=dict(queued=2, running=0, done=1, dead=0, cancelled=0))
    assert list(cpu.counts()['llm']) == list(statuses)
    assert llm.counts()['llm'] == llm.stats() and cpu.counts()['cpu'] == cpu.stats()

# ---------------------------------------------------------------------------------------------------------------------
# One base, two dialects

def test_one_base(store):
    "Both stores are `Store`s with a complete dialect; `q.url` reopens the same queue; `repr` hides a password"
    q = open_queue(store, name='u')
    assert isinstance(q, Store) and missing_dialect(type(q)) == []
    jid = q.enqueue('x')
    with open_queue(q.url, name='u') as again: assert again.get(jid).data == 'x' and type(again) is type(q)
    q.url = 'postgresql://app:s3cret@db.example/jobs'
    assert 's3cret' not in repr(q) and 'app:***@db.example' in repr(q)
    with pytest.raises(RuntimeError, match='one Queue per thread'): run_thread(q.stats)

def run_thread(f):
    "Run `f` in a new thread; re-raise what it raised"
    import threading
    err = []
    def go():
        try: f()
        except Exception as e: err.append(e)
    t = threading.Thread(target=go); t.start(); t.join()
    if err: raise err[0]

def test_no_store_imports_another():
    "`store` imports no store; `dbqueue` and `pgqueue` import only `store` from the package"
    import ast, concurrency_demo
    root = Path(concurrency_demo.__file__).parent
    def imports(mod):
        tree = ast.parse((root/f'{mod}.py').read_text())
        return {(n.module or '').lstrip('.').removeprefix('concurrency_demo.') for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                if n.level or (n.module or '').startswith('concurrency_demo')}
    assert imports('store') == set() and imports('dbqueue') == {'store'} and imports('pgqueue') == {'store'}
