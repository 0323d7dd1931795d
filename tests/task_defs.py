"""Tasks at module level, so that `ProcessWorkers`' children can import them by name (tests/test_tasks.py).

`make(url)` builds the registry over a given database: the children get the registry itself (pickled by reference to
these functions), so they run the same tasks against the same URL.
"""
import asyncio, time
from concurrency_demo.tasks import Tasks, Retry, current_job

class Flaky(Exception): "An error worth a retry"
class Broken(Exception): "An error no retry can fix"

def add(a, b=0, *rest, scale=1, **extra): return (a + b + sum(rest)) * scale + sum(extra.values())
async def aadd(a, b=0): await asyncio.sleep(0.001); return a + b
def noop(): return None
def boom(kind): raise {'flaky': Flaky, 'broken': Broken}[kind](kind)
def later(key):
    "Ask to run again once (counted per key in the job's progress note), then return the number of runs"
    j = current_job()
    if j.job.note != 'retried': j.progress(0.5, 'retried'); raise Retry(0)
    return 'ran twice'
def report(n):
    for i in range(n): current_job().progress((i+1)/n, f'step {i+1}')
    return n
async def areport(n):
    current_job().progress(0.25, 'a quarter'); await asyncio.sleep(0.001); return n
def hang(s): time.sleep(s); return 'late'
async def ahang(s): await asyncio.sleep(s); return 'late'
def quick(i): return i

def make(url, **kw):
    t = Tasks(url, **kw)
    for f in (add, aadd, noop, later, report, areport, quick): t.task(f)
    t.task(boom, max_attempts=3, retry_on=(Flaky,))
    t.task(hang, timeout=0.5, max_attempts=1)
    t.task(ahang, timeout=0.5, max_attempts=1)
    return t

def spin(n):
    "Cooperative: stop early once cancelled"
    for i in range(n):
        if current_job().cancelled: return -i
        time.sleep(0.01)
    return n
async def await_forever(): await asyncio.sleep(3600); return 'never'
def sleep_hard(s): time.sleep(s); return 'woke'

def make_cancellable(url, **kw):
    t = Tasks(url, **kw)
    for f in (spin, await_forever, sleep_hard, quick): t.task(f)
    return t
