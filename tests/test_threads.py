"""ThreadWorkers (lesson 01): errors are stored and logged, stop() leaves nothing running, n=0 matches n=3, hangs don't block stop.

Each test runs against SQLite and PostgreSQL (the `qurl` fixture in conftest.py). No test asserts a timing beyond loose bounds.
"""
import json, logging, os, threading, time
from collections import Counter
import pytest
from helpers import wait_until
from concurrency_demo.store import open_queue, LeaseLost
from concurrency_demo.threads import ThreadWorkers
from concurrency_demo.worker import Heartbeat, run_job

pytestmark = pytest.mark.timeout(60)
LOG = 'concurrency_demo.threads'

def square_or_fail(x):
    if x < 0: raise ValueError(f'negative: {x}')
    return x*x

def outcomes(q, ids):
    "Each job's data, status, result and last error line: what a run leaves in the queue"
    return [(j.data, j.status, j.result, j.error and j.error.splitlines()[-1]) for j in map(q.get, ids)]

def test_errors_end_up_in_the_row_and_the_log(qurl, caplog):
    url,kw = qurl
    q = open_queue(url, **kw)
    ids = q.enqueue_many([1, -2, 3], max_attempts=1)
    caplog.set_level(logging.WARNING, logger=LOG)
    with ThreadWorkers(url, square_or_fail, n=3, **kw) as w: assert w.drain(timeout=20)
    bad = q.get(ids[1])
    assert bad.status == 'dead'
    assert bad.error.startswith('Traceback') and 'in square_or_fail' in bad.error
    assert bad.error.splitlines()[-1] == 'ValueError: negative: -2'
    recs = [r for r in caplog.records if r.name == LOG]
    assert [r.levelname for r in recs] == ['ERROR']
    assert recs[0].getMessage() == f'Job {ids[1]} failed (attempt 1 of 1): ValueError: negative: -2'
    assert recs[0].exc_info and recs[0].exc_info[0] is ValueError  # the traceback goes to the log too
    assert [q.get(i).result for i in (ids[0], ids[2])] == [1, 9]
    s = w.stats()
    assert (s['processed'], s['failed'], s['running']) == (2, 1, 0)

def test_unstorable_result_is_a_failure(qurl, caplog):
    url,kw = qurl
    q = open_queue(url, **kw)
    jid = q.enqueue('x', max_attempts=1)
    caplog.set_level(logging.WARNING, logger=LOG)
    ThreadWorkers(url, lambda d: object(), n=0, **kw).start()
    j = q.get(jid)
    assert j.status == 'dead' and j.error.splitlines()[-1].startswith('TypeError: ')
    assert any(f'Job {jid} failed' in r.getMessage() for r in caplog.records)

def test_retries_then_dead(qurl):
    url,kw = qurl
    q = open_queue(url, backoff=0, **kw)
    jid = q.enqueue(-1, max_attempts=3)
    w = ThreadWorkers(url, square_or_fail, n=0, backoff=0, **kw).start()
    j = q.get(jid)
    assert (j.status, j.attempts) == ('dead', 3)
    assert w.stats()['failed'] == 3

def test_stop_leaves_nothing_running_and_counts_add_up(qurl):
    url,kw = qurl
    q = open_queue(url, **kw)
    q.enqueue_many([0.05]*40)
    w = ThreadWorkers(url, time.sleep, n=4, **kw).start()
    wait_until(lambda: w.stats()['processed'] >= 4)
    w.stop(timeout=5); w.join(timeout=5)
    qs,ws = q.stats(),w.stats()
    assert qs['running'] == 0 and ws['running'] == 0
    assert qs['queued'] + qs['done'] == 40 and qs['dead'] == 0
    assert qs['done'] == ws['processed'] == sum(ws['workers'].values())
    assert ws['failed'] == 0 and qs['queued'] > 0  # stopped part way
    assert not any(t.is_alive() for t in w.threads)

def test_stop_releases_jobs_claimed_after_stop_began(qurl):
    "A job claimed in the moment `stop` begins is handed back by its own thread, not run and not left running"
    url,kw = qurl
    q = open_queue(url, **kw)
    q.enqueue_many([0.01]*200)
    for _ in range(5):
        w = ThreadWorkers(url, time.sleep, n=6, poll=0.001, **kw).start()
        time.sleep(0.02)
        w.stop(timeout=5)
        assert q.stats()['running'] == 0
    s = q.stats()
    assert s['queued'] + s['done'] == 200

def test_serial_gives_the_same_results_as_threads(tmp_path):
    datas = list(range(-3, 12))
    res = {}
    for n in (0, 3):
        q = open_queue(tmp_path/f'n{n}.db')
        ids = q.enqueue_many(datas, max_attempts=1)
        w = ThreadWorkers(tmp_path/f'n{n}.db', square_or_fail, n=n).start()
        assert w.drain(timeout=20)
        w.stop()
        res[n] = outcomes(q, ids)
        assert {k: v for k,v in w.stats().items() if k != 'workers'} == dict(processed=12, failed=3, running=0)
    assert res[0] == res[3]
    assert res[0][0] == (-3, 'dead', None, 'ValueError: negative: -3')

def test_serial_runs_in_the_caller(tmp_path):
    q = open_queue(tmp_path/'q.db')
    q.enqueue_many(range(3))
    seen = set()
    ThreadWorkers(tmp_path/'q.db', lambda d: seen.add(threading.get_ident()), n=0).start()
    assert seen == {threading.get_ident()}
    assert q.stats()['done'] == 3

def test_a_hung_handler_does_not_block_stop(qurl, caplog):
    url,kw = qurl
    q = open_queue(url, **kw)
    jid = q.enqueue('stuck')
    gate = threading.Event()
    def hang(d): gate.wait(30); return 'late'
    caplog.set_level(logging.WARNING, logger=LOG)
    w = ThreadWorkers(url, hang, n=2, lease=0.5, **kw).start()
    try:
        wait_until(lambda: w.stats()['running'] == 1)
        time.sleep(0.6)  # past the lease: the heartbeat has been keeping it
        t = time.monotonic()
        w.stop(timeout=1)
        w.join()  # doesn't wait for the thread stop gave up on
        took = time.monotonic()-t
        assert took < 1 + 2, took  # the timeout, plus slack for a busy machine
        j = q.get(jid)
        assert (j.status, j.attempts, q.stats()['running']) == ('queued', 0, 0)
        assert any('released it to the queue' in r.getMessage() for r in caplog.records)
    finally: gate.set()
    wait_until(lambda: w.stats()['failed'] == 1)  # its late ack got LeaseLost: logged, not raised
    assert any(r.levelname == 'WARNING' and f'Job {jid} outcome dropped' in r.getMessage() for r in caplog.records)
    assert q.get(jid).status == 'queued'

def test_heartbeat_keeps_a_long_job(qurl):
    url,kw = qurl
    q = open_queue(url, lease=0.3, reclaim_every=0, **kw)
    jid = q.enqueue('long')
    other = []
    def long_job(d):
        def poach():  # another worker keeps trying to take the job while it runs
            o = open_queue(url, reclaim_every=0, **kw)
            for _ in range(10):
                other.append(o.dequeue()); time.sleep(0.1)
        t = threading.Thread(target=poach); t.start(); t.join()
        return 'held'
    w = ThreadWorkers(url, long_job, n=1, lease=0.3, **kw).start()
    assert w.drain(timeout=20)
    w.stop()
    j = q.get(jid)
    assert (j.status, j.result, j.attempts) == ('done', 'held', 1)
    assert other == [None]*10

def test_run_job_hands_back_on_keyboard_interrupt(tmp_path):
    q = open_queue(tmp_path/'q.db')
    jid = q.enqueue('x')
    def interrupted(d): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): run_job(q, q.dequeue(), interrupted)
    j = q.get(jid)
    assert (j.status, j.attempts) == ('queued', 0)

def test_run_job_lost_lease_is_a_warning(tmp_path, caplog):
    q = open_queue(tmp_path/'q.db')
    jid = q.enqueue('x')
    j = q.dequeue()
    def released_meanwhile(d): q.release(j); return 1
    caplog.set_level(logging.WARNING, logger='concurrency_demo.worker')
    assert run_job(q, j, released_meanwhile) is False
    assert [r.levelname for r in caplog.records if r.name == 'concurrency_demo.worker'] == ['WARNING']

def test_every_job_done_once_under_contention(tmp_path):
    q = open_queue(tmp_path/'q.db')
    q.enqueue_many(range(600))
    seen, lock = Counter(), threading.Lock()
    def count(d):
        with lock: seen[d] += 1
        return d
    with ThreadWorkers(tmp_path/'q.db', count, n=8, poll=0.01) as w: assert w.drain(timeout=30)
    assert seen == Counter(range(600))
    s = w.stats()
    assert (s['processed'], s['failed'], sum(s['workers'].values())) == (600, 0, 600)
    assert q.stats() == dict(queued=0, running=0, done=600, dead=0, cancelled=0)

def test_bad_input(tmp_path):
    p = tmp_path/'q.db'
    with pytest.raises(TypeError, match='handler must be callable'): ThreadWorkers(p, 'not a function')
    for n in (-1, 1.5, True): 
        with pytest.raises(ValueError, match='n must be'): ThreadWorkers(p, abs, n=n)
    for poll in (0, -1, True, 'fast', float('nan')):
        with pytest.raises(ValueError, match='poll'): ThreadWorkers(p, abs, poll=poll)
    with pytest.raises(TypeError, match='queue='): ThreadWorkers(p, abs, name='llm')
    assert 'secret' not in repr(ThreadWorkers('postgresql://u:secret@localhost/db', abs))
    for queue in ('', None, 3):
        with pytest.raises(ValueError, match='queue must be'): ThreadWorkers(p, abs, queue=queue)
    with pytest.raises(ValueError, match='lease'): ThreadWorkers(p, abs, lease=-1)
    with pytest.raises(FileNotFoundError, match='does not exist'): ThreadWorkers(tmp_path/'nope'/'q.db', abs).start()
    w = ThreadWorkers(p, abs, n=1).start()
    with pytest.raises(RuntimeError, match='already started'): w.start()
    w.stop()
    assert not p.with_name('nope').exists()

def test_heartbeat_alone(tmp_path):
    "Heartbeat is usable on its own (lesson 04's processes run one each)"
    q = open_queue(tmp_path/'q.db', lease=0.3, reclaim_every=0)
    jid = q.enqueue('x')
    j = q.dequeue()
    hb = Heartbeat(tmp_path/'q.db', lease=0.3).start()
    hb.add(j)
    time.sleep(1)
    hb.discard(j); hb.stop()
    assert q.get(jid).lease_until > time.time()
    q.ack(j, 'ok')

def test_serves_the_queue_it_names(qurl):
    "`queue=` picks the queue; the others in the same database are left alone, and `drain` waits for this one only"
    url,kw = qurl
    a,b = open_queue(url, name='a', **kw),open_queue(url, name='b', **kw)
    a.enqueue_many([1, 2, 3]); b.enqueue_many([4, 5])
    with ThreadWorkers(url, square_or_fail, n=2, queue='a', worker='wa', **kw) as w:
        assert (w.queue, w.worker, w.names) == ('a', 'wa', ['wa-0', 'wa-1'])
        assert w.drain(timeout=20)
    assert a.stats()['done'] == 3 and b.stats() == dict(queued=2, running=0, done=0, dead=0, cancelled=0)
    assert w.stats()['processed'] == 3
    assert 'a' in repr(w) and 'square_or_fail' in repr(w)

def test_signature_names_the_queue():
    import inspect
    assert list(inspect.signature(ThreadWorkers).parameters) == ['url', 'handler', 'n', 'queue', 'poll', 'lease', 'worker', 'log', 'batch', 'queue_kwargs']
