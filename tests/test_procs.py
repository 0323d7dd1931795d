"""ProcessWorkers (lesson 04): results and errors stored, stop() leaves nothing running, a killed child's job comes back
after its lease, a killed parent's children exit, n=0 matches n=2; and the CPU-job handler's whitelist.

Each queue test runs against SQLite and PostgreSQL (the `qurl` fixture in conftest.py). No test asserts a timing beyond loose bounds.
"""
import functools, json, logging, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from helpers import wait_until
from concurrency_demo.store import open_queue
from concurrency_demo.procs import ProcessWorkers, cpu_job, count_primes, check_importable

pytestmark = pytest.mark.timeout(60)
LOG = 'concurrency_demo.procs'

def alive(pid):
    "Is `pid` running (not gone, not a zombie)?"
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[-1].split()[0] != 'Z'
    except OSError: return False

def running_on(w, jid):
    "The index of the worker of `w` running job `jid`, if any"
    return next((i for i in range(w.n) if w.slots[3*i+2] == jid), None)

def test_drains_with_results_and_errors(qurl):
    url,kw = qurl
    q = open_queue(url, **kw)
    ids = q.enqueue_many([dict(fn='count_primes', n=1000*(i+1)) for i in range(6)])
    bad = q.enqueue(dict(fn='fib', n=99), max_attempts=1)
    with ProcessWorkers(url, cpu_job, n=2, poll=0.02, **kw) as w:
        assert w.drain(timeout=30)
        s = w.stats()
    assert [q.get(i).result for i in ids] == [count_primes(1000*(i+1)) for i in range(6)]
    b = q.get(bad)
    assert b.status == 'dead' and b.error.startswith('Traceback') and 'in cpu_job' in b.error
    assert b.error.splitlines()[-1] == 'ValueError: cpu_job fib needs n a number from 0 to 32; got 99'
    assert (s['processed'], s['failed'], s['running']) == (6, 1, 0)
    assert sum(s['workers'].values()) == 6 and len(s['workers']) == 2
    assert q.stats()['running'] == 0
    assert not any(p.is_alive() for p in w.procs)

def test_retries_then_dead(qurl):
    url,kw = qurl
    q = open_queue(url, **kw)
    jid = q.enqueue(dict(fn='nope'), max_attempts=3)
    with ProcessWorkers(url, cpu_job, n=2, poll=0.02, backoff=0, **kw) as w:
        wait_until(lambda: q.get(jid).status == 'dead')
        wait_until(lambda: w.stats()['failed'] == 3)
    assert q.get(jid).attempts == 3

def test_stop_ends_overrunning_children_and_leaves_nothing_running(qurl, caplog):
    url,kw = qurl
    q = open_queue(url, **kw)
    slow = q.enqueue_many([dict(fn='sleep', s=30)]*2)
    caplog.set_level(logging.WARNING, logger=LOG)
    w = ProcessWorkers(url, cpu_job, n=2, poll=0.02, worker='w', **kw).start()
    wait_until(lambda: w.stats()['running'] == 2)
    t = time.monotonic(); w.stop(timeout=0.3)
    assert time.monotonic()-t < 5
    assert q.stats()['running'] == 0 and w.stats()['running'] == 0
    assert [(q.get(i).status, q.get(i).attempts) for i in slow] == [('queued', 0)]*2
    assert not any(p.is_alive() for p in w.procs)
    msgs = sorted(r.getMessage() for r in caplog.records if r.name == LOG)
    assert len(msgs) == 2 and all('after stop(timeout=0.3): released it to the queue' in m for m in msgs)
    assert sorted(m.split()[1] for m in msgs) == sorted(map(str, slow))

def test_stop_lets_jobs_in_flight_finish(qurl):
    url,kw = qurl
    q = open_queue(url, **kw)
    jid = q.enqueue(dict(fn='busy', ms=300))
    w = ProcessWorkers(url, cpu_job, n=1, poll=0.02, **kw).start()
    wait_until(lambda: w.stats()['running'])
    w.stop(timeout=20)
    assert q.get(jid).status == 'done'
    assert w.stats() == dict(processed=1, failed=0, running=0, workers={w.names[0]: 1})
    w.join(timeout=5)

def test_killed_child_job_comes_back_after_its_lease(tmp_path, caplog):
    url = tmp_path/'q.db'
    q = open_queue(url)
    jid = q.enqueue(dict(fn='busy', ms=1500))
    caplog.set_level(logging.WARNING, logger=LOG)
    with ProcessWorkers(url, cpu_job, n=2, poll=0.02, lease=1, worker='w') as w:
        wait_until(lambda: running_on(w, jid) is not None)
        i = running_on(w, jid)
        victim = w.procs[i]
        os.kill(victim.pid, signal.SIGKILL)
        assert w.drain(timeout=30)
        wait_until(lambda: w.restarts == 1 and all(p.is_alive() for p in w.procs))
    j = q.get(jid)
    assert (j.status, j.attempts) == ('done', 2)
    assert victim.exitcode == -signal.SIGKILL
    assert any(f'Worker w-{i} exited with code -9 while running job {jid}' in r.getMessage() for r in caplog.records)

def test_heartbeat_keeps_a_long_job(tmp_path):
    url = tmp_path/'q.db'
    q = open_queue(url)
    jid = q.enqueue(dict(fn='busy', ms=2500))
    with ProcessWorkers(url, cpu_job, n=2, poll=0.02, lease=1.2) as w: assert w.drain(timeout=30)
    assert (q.get(jid).status, q.get(jid).attempts) == ('done', 1)  # the lease was extended, never lost

def test_children_ignore_ctrl_c(tmp_path):
    url = tmp_path/'q.db'
    q = open_queue(url)
    jid = q.enqueue(dict(fn='busy', ms=500))
    with ProcessWorkers(url, cpu_job, n=1, poll=0.02) as w:
        wait_until(lambda: w.stats()['running'])
        os.kill(w.procs[0].pid, signal.SIGINT)
        assert w.drain(timeout=20)
        assert w.restarts == 0
    assert (q.get(jid).status, q.get(jid).attempts) == ('done', 1)

def test_children_exit_when_the_parent_is_killed(tmp_path):
    url = tmp_path/'q.db'
    open_queue(url).enqueue(dict(fn='sleep', s=30))
    script = f"""
import time
from concurrency_demo.procs import ProcessWorkers, cpu_job
w = ProcessWorkers({str(url)!r}, cpu_job, n=2, poll=0.02).start()
while not w.stats()['running']: time.sleep(0.01)
print(*[p.pid for p in w.procs], flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try: kids = [int(o) for o in parent.stdout.readline().split()]
    finally: parent.kill(); parent.wait()
    assert len(kids) == 2
    wait_until(lambda: not any(map(alive, kids)), timeout=10)

def test_serial_gives_the_same_results_as_processes(tmp_path):
    datas = [dict(fn='count_primes', n=500*(i+1)) for i in range(5)] + [dict(fn='fib', n=15)]
    res = {}
    for n in (0, 2):
        url = tmp_path/f'q{n}.db'
        q = open_queue(url)
        ids = q.enqueue_many(datas)
        w = ProcessWorkers(url, cpu_job, n=n, poll=0.02).start()
        if n: assert w.drain(timeout=30); w.stop()
        res[n] = [q.get(i).result for i in ids], w.stats()['processed']
    assert res[0] == res[2] == ([count_primes(500*(i+1)) for i in range(5)] + [610], 6)

def test_serial_takes_any_callable(tmp_path):
    url = tmp_path/'q.db'
    q = open_queue(url)
    ids = q.enqueue_many([1, 2])
    w = ProcessWorkers(url, lambda x: -x, n=0).start()
    assert [q.get(i).result for i in ids] == [-1, -2] and w.procs == []

def _local_handler(x): return x

class Doubler:
    def __call__(self, x): return 2*x

def test_bad_input(tmp_path):
    url = tmp_path/'q.db'
    def nested(x): return x
    with pytest.raises(ValueError, match="can't be imported by name"): ProcessWorkers(url, lambda x: x)
    with pytest.raises(ValueError, match="can't be imported by name"): ProcessWorkers(url, nested)
    with pytest.raises(ValueError, match='copies locks'): ProcessWorkers(url, cpu_job, method='fork')
    with pytest.raises(ValueError, match='not available'): ProcessWorkers(url, cpu_job, method='teleport')
    with pytest.raises(ValueError, match='n must be'): ProcessWorkers(url, cpu_job, n=-1)
    for poll in (0, True, 'fast'):
        with pytest.raises(ValueError, match='poll'): ProcessWorkers(url, cpu_job, poll=poll)
    with pytest.raises(TypeError, match='queue='): ProcessWorkers(url, cpu_job, name='cpu')
    with pytest.raises(TypeError, match='callable'): ProcessWorkers(url, 42)
    assert check_importable(_local_handler) is _local_handler  # a module-level function of an importable module
    assert check_importable(functools.partial(cpu_job)).func is cpu_job
    assert isinstance(check_importable(Doubler()), Doubler)  # a callable object of an importable class
    with pytest.raises(ValueError, match="can't be imported by name"): check_importable(functools.partial(nested))
    w = ProcessWorkers(url, cpu_job, n=1, poll=0.02).start()
    with pytest.raises(RuntimeError, match='already started'): w.start()
    w.stop()

def test_a_child_that_cannot_open_the_queue_fails_start(tmp_path):
    w = ProcessWorkers(tmp_path/'missing'/'q.db', cpu_job, n=2)
    with pytest.raises(RuntimeError, match='does not exist'): w.start()
    w.join(timeout=5)
    assert not any(p.is_alive() for p in w.procs)

def test_cpu_job_whitelist():
    assert cpu_job(dict(fn='count_primes', n=100)) == 25 and cpu_job(dict(fn='fib', n=10)) == 55
    assert cpu_job(dict(fn='busy', ms=1)) > 0 and cpu_job(dict(fn='sleep', s=0)) == 0
    for bad,msg in ((dict(fn='os.system', n=1), 'fn one of'), ('count_primes', 'fn one of'), (dict(fn='fib', n=33), 'from 0 to 32'),
                    (dict(fn='fib', n=True), 'from 0 to 32'), (dict(fn='fib', n='3'), 'from 0 to 32'), (dict(fn='fib', n=3, x=1), "takes only 'n'")):
        with pytest.raises(ValueError, match=msg): cpu_job(bad)

def test_serves_the_queue_it_names(qurl):
    "`queue=` picks the queue; jobs of other queues in the same database are left alone"
    url,kw = qurl
    cpu,other = open_queue(url, name='cpu', **kw),open_queue(url, name='other', **kw)
    ids = cpu.enqueue_many([dict(fn='fib', n=10), dict(fn='fib', n=12)]); other.enqueue(dict(fn='fib', n=5))
    with ProcessWorkers(url, cpu_job, n=2, queue='cpu', poll=0.02, worker='pc', **kw) as w:
        assert (w.queue, w.worker, w.names) == ('cpu', 'pc', ['pc-0', 'pc-1'])
        assert w.drain(timeout=30)
    assert [cpu.get(i).result for i in ids] == [55, 144]
    assert other.stats()['queued'] == 1 and w.stats()['processed'] == 2
