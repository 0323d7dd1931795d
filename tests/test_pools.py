"Worker pools' heartbeat rows and paused queues, on both stores: rows appear, say what runs, go at stop, turn dead when killed; a paused queue's jobs wait for every worker, in this process and another, until resumed"
import os, signal, subprocess, sys, time, textwrap
import pytest
from concurrency_demo import ThreadWorkers, AsyncWorkers, ProcessWorkers, open_queue
from concurrency_demo.procs import cpu_job
from helpers import wait_until, TASKS_APP

def slow(x): time.sleep(x); return x
async def aslow(x):
    import asyncio
    await asyncio.sleep(x); return x

def pool_of(kind, url, queue='default'):
    if kind == 'threads': return ThreadWorkers(url, slow, n=2, poll=0.05, queue=queue)
    if kind == 'async': return AsyncWorkers(url, aslow, concurrency=3, poll=0.05, queue=queue)
    return ProcessWorkers(url, cpu_job, n=2, poll=0.05, queue=queue)

@pytest.mark.parametrize('kind', ['threads', 'async', 'processes'])
def test_pool_row_appears_runs_and_goes(store, kind):
    q = open_queue(store)
    w = pool_of(kind, store)
    w.beat_every = 0.2
    w.start()
    try:
        rows = wait_until(lambda: q.pools(), timeout=10)
        test = rows[0]
        assert (test['id'], test['kind'], test['queues'], test['pid'], test['alive']) == (w.worker, kind, ['default'], os.getpid(), True)
        assert test['size'] == (3 if kind == 'async' else 2)
        jid = q.enqueue({'fn': 'sleep', 's': 1.5} if kind == 'processes' else 1.5)
        wait_until(lambda: q.pools()[0]['running'] == [jid], timeout=10)
        wait_until(lambda: q.pools()[0]['processed'] == 1 and q.pools()[0]['running'] == [], timeout=15)
    finally: w.stop()
    wait_until(lambda: q.pools() == [], timeout=3)  # a clean stop deletes the row
    q.close()

_killed = textwrap.dedent("""
    import sys, time
    from concurrency_demo import ThreadWorkers
    def h(x): return x
    w = ThreadWorkers(sys.argv[1], h, n=1, poll=0.05, queue=sys.argv[2])
    w.beat_every = 0.2
    w.start()
    print('ready', w.worker, flush=True)
    time.sleep(600)
""")

def _worker_proc(url, queue='default'):
    p = subprocess.Popen([sys.executable, '-c', _killed, url, queue], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    assert line[0] == 'ready', line
    return p, line[1]

def test_killed_pool_turns_dead(store):
    q = open_queue(store)
    p,pid_id = _worker_proc(store)
    try:
        wait_until(lambda: [(r['id'], r['alive']) for r in q.pools()] == [(pid_id, True)], timeout=10)
        p.send_signal(signal.SIGKILL); p.wait(5)
        row = wait_until(lambda: [r for r in q.pools() if not r['alive']], timeout=10)[0]
        assert row['id'] == pid_id and row['age'] > 3*row['every']
    finally:
        if p.poll() is None: p.kill()
    q.close()

@pytest.mark.parametrize('kind', ['threads', 'async', 'processes'])
def test_paused_queue_not_claimed(store, kind):
    q = open_queue(store, name='pz')
    assert q.pause('pz') is True and q.pause() is False and q.paused() == {'pz'}
    w = pool_of(kind, store, queue='pz').start()
    try:
        jid = q.enqueue({'fn': 'sleep', 's': 0} if kind == 'processes' else 0)  # enqueueing goes on while paused
        time.sleep(1.5)
        assert q.get(jid).status == 'queued'
        assert q.resume() is True
        wait_until(lambda: q.get(jid).status == 'done', timeout=5)
    finally: w.stop()
    q.close()

def test_paused_queue_not_claimed_by_another_process(store):
    q = open_queue(store, name='pz')
    p,_ = _worker_proc(store, 'pz')
    try:
        first = q.enqueue(1)
        wait_until(lambda: q.get(first).status == 'done', timeout=10)  # the other process works the queue
        q.pause()
        time.sleep(1)  # its copy of the paused set is read again within `pause_every` (0.5 s)
        jid = q.enqueue(2)
        time.sleep(1.5)
        assert q.get(jid).status == 'queued'
        t0 = time.monotonic(); q.resume()
        wait_until(lambda: q.get(jid).status == 'done', timeout=5)
        assert time.monotonic() - t0 < 3
    finally: p.kill(); p.wait(5)
    q.close()

def test_pause_bad_input_one_line(store):
    q = open_queue(store)
    for bad in ('', 3):
        with pytest.raises(ValueError, match='queue must be a non-empty string'): q.pause(bad)
    assert q.paused() == set()
    with pytest.raises(ValueError, match="pool's id"): q.beat('', kind='threads', queues=[], size=1, every=1, started_at=0)
    q.close()

def test_pool_rates_from_samples(store):
    from concurrency_demo.store import FakeClock
    clk = FakeClock(1000.)
    q = open_queue(store, clock=clk)
    q.beat('p', kind='threads', queues=['a', 'b'], size=4, every=2, started_at=700, processed=300, failed=0,
           samples=[[700+10*i, 10*i, 0] for i in range(1, 30)], host='h', pid=1)
    clk.tick(1)
    r = q.pools()[0]
    assert (r['rate_1m'], r['rate_5m'], r['queues'], r['age']) == (1.0, 1.0, ['a', 'b'], 1.0)
    q.close()

def test_cli_workers_pause_resume(store):
    import json
    from helpers import cdemo
    w = ThreadWorkers(store, slow, n=1, poll=0.05, queue='cli')
    w.beat_every = 0.2
    w.start()
    q = open_queue(store, name='cli')
    try:
        got = wait_until(lambda: json.loads(cdemo('workers', '--db', store, '--json').stdout)['pools'], timeout=20)
        assert (got[0]['id'], got[0]['kind'], got[0]['queues'], got[0]['alive']) == (w.worker, 'threads', ['cli'], True)
        r = cdemo('pause', 'cli', '--db', store)
        assert (r.returncode, r.stdout, r.stderr) == (0, 'queue cli: paused\n', '')
        time.sleep(0.6)  # the pool's copy of the paused set is at most `pause_every` old
        jid = q.enqueue(0)
        time.sleep(1.5)
        assert q.get(jid).status == 'queued'
        assert json.loads(cdemo('workers', '--db', store, '--json').stdout)['paused'] == ['cli']
        assert cdemo('resume', 'cli', '--db', store).stdout == 'queue cli: resumed\n'
        wait_until(lambda: q.get(jid).status == 'done', timeout=5)
    finally: w.stop()
    r = cdemo('pause', '', '--db', store)
    assert (r.returncode, r.stdout, r.stderr) == (2, '', "cdemo: error: pause: queue must be a non-empty string, got ''\n")
    q.close()

def test_cdemo_worker_tasks_pools(tmp_path):
    "`cdemo worker --tasks app:tasks` (the registry's pools, as `asgi.lifespan` starts them) writes a row per pool, and SIGTERM deletes them"
    (tmp_path/'app.py').write_text(TASKS_APP)
    p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'worker', '--tasks', 'app:tasks', '--threads', '2'],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith('Workers of app:tasks')
        q = open_queue(tmp_path/'jobs.db')
        rows = lambda: sorted((r['kind'], r['queues'][0], r['size'], r['pid']) for r in q.pools() if r['alive'])
        got = wait_until(lambda: len(rows()) == 3 and rows(), timeout=20)
        assert got == [('async', 'io', 50, p.pid), ('threads', 'default', 2, p.pid), ('threads', 'slow', 2, p.pid)]
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        assert q.pools() == [], (q.pools(), p.stderr.read())
        q.close()
    finally:
        if p.poll() is None: p.kill()
