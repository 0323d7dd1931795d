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
