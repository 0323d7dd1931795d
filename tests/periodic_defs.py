"""Periodic tasks at module level, so that `ProcessWorkers`' children can import them by name (tests/test_periodic.py)."""
from concurrency_demo.tasks import Tasks

def beat(): return 'beat'
def nightly(): return 'nightly'

def make(url, every=0.3, **kw):
    "A registry over `url` with `beat` every `every` seconds (run at the first start too) and `nightly` at 03:00 UTC"
    t = Tasks(url, **kw)
    t.periodic(beat, every=every, first=True)
    t.periodic(nightly, cron='0 3 * * *')
    return t
