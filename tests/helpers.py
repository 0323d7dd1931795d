"Helpers the test files share"
import subprocess, sys, time

def wait_until(f, timeout=30, every=0.01):
    "Poll `f` until it returns something truthy, and return that; `TimeoutError` after `timeout` seconds"
    end = time.monotonic()+timeout
    while not (res := f()):
        if time.monotonic() > end: raise TimeoutError(f'still false after {timeout}s')
        time.sleep(every)
    return res

def cdemo(*args, timeout=60, **kw):
    "Run `cdemo args` (the installed console script's entry point, with this Python) and return the CompletedProcess"
    return subprocess.run([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)

# an app module with a `Tasks` registry, as a user writes one: `cdemo worker --tasks app:tasks` runs its pools (a thread pool per
# queue of sync tasks, an event loop for the async ones)
TASKS_APP = '''
import asyncio
from concurrency_demo import Tasks
tasks = Tasks('jobs.db')
@tasks.task
def double(n: int) -> int: return 2*n
@tasks.task(queue='io')
async def adouble(n: int) -> int: await asyncio.sleep(0.01); return 2*n
@tasks.task(queue='slow')
def nap(s: float) -> float:
    import time; time.sleep(s); return s
'''
