"""Periodic jobs and retention (issue "Tasks"): each slot runs once however many pools or processes schedule it,
a missed slot runs once, cron, the first start, retention, and one-line errors; on both stores."""
import collections, logging, sys, time
import pytest
from concurrency_demo import Tasks
from concurrency_demo.store import open_queue, FakeClock
from concurrency_demo.tasks import _Scheduler
from concurrency_demo.threads import ThreadWorkers
from concurrency_demo.aio import AsyncWorkers
from concurrency_demo.procs import ProcessWorkers
import periodic_defs as pd

pytestmark = pytest.mark.timeout(120)
quiet = logging.getLogger('tests.quiet'); quiet.disabled = True
T0 = 1_800_000_000.  # 2027-01-15 08:00 UTC

def jobs(url, name='beat'): return [j for j in open_queue(url).recent(10_000) if j.data['task'] == name]

def test_two_worker_processes_run_each_slot_once_over_10_slots(store):
    "The issue's Done-when: two ProcessWorkers pools (two worker processes, two schedulers) on one registry, every 0.3 s: one job per slot, 10 slots"
    tasks = pd.make(store, every=0.3, keep_finished=None)
    pools = [ProcessWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet) for _ in range(2)]
    for p in pools: p.start()
    try:
        end = time.monotonic() + 60
        while len({j.data['slot'] for j in jobs(store)}) < 11 and time.monotonic() < end: time.sleep(0.05)
    finally:
        for p in pools: p.stop()
    js = jobs(store)
    per_slot = collections.Counter(j.data['slot'] for j in js)
    assert len(per_slot) >= 10 and set(per_slot.values()) == {1}, per_slot
    slots = sorted(per_slot)
    assert all(round((b - a) / 0.3) == 1 for a, b in zip(slots, slots[1:])), slots  # no slot skipped between the first and the last
    done = [j for j in js if j.status == 'done']
    assert len(done) >= 9 and all(j.result == 'beat' for j in done)

@pytest.mark.parametrize('kind', ['threads', 'aio'])
def test_pools_of_each_runtime_share_the_slots(kind, store):
    "Two pools of one runtime, each with its scheduler: no slot twice"
    tasks = pd.make(store, every=0.2, keep_finished=None)
    mk = dict(threads=lambda: ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet),
              aio=lambda: AsyncWorkers(tasks.url, tasks, concurrency=2, poll=0.01, log=quiet))[kind]
    with mk(), mk(): time.sleep(1.2)
    per_slot = collections.Counter(j.data['slot'] for j in jobs(store))
    assert len(per_slot) >= 3 and set(per_slot.values()) == {1}, per_slot

def test_first_start_records_and_missed_slots_run_once(store):
    clk = FakeClock(T0)
    tasks = Tasks(store, keep_finished=None, clock=clk)
    @tasks.periodic(every=60)
    def report(): return 1
    a, b = _Scheduler(tasks, 'default'), _Scheduler(tasks, 'default')
    assert (a.run_once(), b.run_once()) == ([], [])  # the very first start only records the slot
    clk.tick(60)
    assert (b.run_once(), a.run_once()) == (['report'], [])
    assert (b.run_once(), a.run_once()) == ([], [])  # the same slot again: nothing
    clk.tick(60*10 + 5)  # ten slots with no scheduler running
    assert (a.run_once(), b.run_once()) == (['report'], [])
    js = jobs(store, 'report')
    assert sorted(j.data['slot'] for j in js) == [T0 + 60, T0 + 660]
    assert js[0].data == {'task': 'report', 'args': [], 'kwargs': {}, 'slot': T0 + 660}

def test_first_true_runs_the_first_slot(store):
    tasks = Tasks(store, keep_finished=None, clock=FakeClock(T0))
    tasks.periodic(pd.beat, every=60, first=True)
    assert _Scheduler(tasks, 'default').run_once() == ['beat'] and len(jobs(store)) == 1

def test_a_pool_schedules_the_tasks_of_its_queue(store):
    tasks = Tasks(store, keep_finished=None, clock=FakeClock(T0))
    tasks.periodic(pd.beat, every=60, first=True, queue='other')
    assert _Scheduler(tasks, 'default').run_once() == []
    assert _Scheduler(tasks, 'other').run_once() == ['beat']
    assert [j.queue for j in jobs(store)] == ['other']

def test_cron(store):
    clk = FakeClock(T0)  # 08:00 UTC
    tasks = pd.make(store, keep_finished=None, clock=clk)
    n = tasks['nightly']
    assert n.slot(T0) == T0 - 5*3600 and n.slot(T0 - 5*3600) == T0 - 5*3600 and n.slot(T0 - 5*3600 - 1) == T0 - 29*3600
    s = _Scheduler(tasks, 'default')
    assert 'nightly' not in s.run_once()
    clk.tick(3600*18)  # 02:00 the next day: the same slot
    assert 'nightly' not in s.run_once()
    clk.tick(3600)  # 03:00
    assert 'nightly' in s.run_once()
    assert [j.data['slot'] for j in jobs(store, 'nightly')] == [T0 + 19*3600]

def test_retention_prunes_old_finished_jobs_keeps_the_rest(store):
    clk = FakeClock(T0)
    tasks = Tasks(store, clock=clk)  # keep_finished: a week, by default
    assert tasks.keep_finished == 7*86400
    @tasks.task(max_attempts=1)
    def job(ok: bool): assert ok; return 'ok'
    @tasks.task(queue='other')
    def other(): return 'other'
    old = [job.enqueue(True), job.enqueue(False), other.enqueue()]
    with ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet, clock=clk) as w: w.drain(10)
    with ThreadWorkers(tasks.url, tasks, queue='other', n=1, poll=0.01, log=quiet, clock=clk) as w: w.drain(10)
    waiting = job.options(delay=60*86400).enqueue(True)
    q = open_queue(store, clock=clk)
    assert [q.get(h.id).status for h in old] == ['done', 'dead', 'done']
    stuck = job.enqueue(True)
    held = open_queue(store, clock=clk, worker='x', lease=30*86400).dequeue()  # a job still running, old
    assert held.id == stuck.id
    clk.tick(8*86400)
    recent = job.enqueue(True)
    with ThreadWorkers(tasks.url, tasks, n=1, poll=0.01, log=quiet, clock=clk) as w:  # its scheduler prunes, at once
        recent.result(10)
    left = {j.id: j.status for j in q.recent()}
    assert left == {recent.id: 'done', waiting.id: 'queued', stuck.id: 'running'}, left

def test_retention_off_and_scheduled_once(store):
    clk = FakeClock(T0)
    keep = Tasks(store, keep_finished=None, clock=clk)
    assert _Scheduler(keep, 'default').run_once() == []
    tasks = Tasks(store, keep_finished=60, clock=clk)
    a, b = _Scheduler(tasks, 'default'), _Scheduler(tasks, 'default')
    assert (a.run_once(), b.run_once()) == (['cdemo.prune:default'], [])
    clk.tick(60)
    assert (b.run_once(), a.run_once()) == (['cdemo.prune:default'], [])

def test_bad_arguments_one_line(store, monkeypatch):
    tasks = Tasks(store)
    for kw, msg in [(dict(every=float('nan')), 'every must be'), (dict(every=float('inf')), 'every must be'), (dict(every=0), 'every must be'),
                    (dict(every=-1), 'every must be'), (dict(every=True), 'every must be'), (dict(), 'one of every='),
                    (dict(every=60, cron='0 3 * * *'), 'one of every='), (dict(cron='61 * * * *'), 'is not valid'),
                    (dict(cron='every day'), 'is not valid'), (dict(cron=3), 'cron must be')]:
        with pytest.raises(ValueError, match=msg) as e: tasks.periodic(pd.beat, **kw)
        assert '\n' not in str(e.value)
    with pytest.raises(TypeError, match='must take no arguments'): tasks.periodic(lambda x: x, every=60)
    with pytest.raises(ValueError): Tasks(store, keep_finished=0)
    monkeypatch.setitem(sys.modules, 'croniter', None)  # as if the `cron` extra weren't installed
    with pytest.raises(ImportError, match="needs the 'cron' extra") as e: tasks.periodic(pd.nightly, cron='0 3 * * *')
    assert '\n' not in str(e.value)
    assert tasks.registry == {}  # nothing refused was registered
