"Helpers the test files share"
import time

def wait_until(f, timeout=30, every=0.01):
    "Poll `f` until it returns something truthy, and return that; `TimeoutError` after `timeout` seconds"
    end = time.monotonic()+timeout
    while not (res := f()):
        if time.monotonic() > end: raise TimeoutError(f'still false after {timeout}s')
        time.sleep(every)
    return res
