"A process whose SQLite watcher runs (any pool's idle wait starts one) can still open a `Queue` while another process commits"
import subprocess, sys, time
from concurrency_demo.store import open_queue

def test_open_while_the_watcher_reads(tmp_path):
    "The watcher's connection, busy in its own thread after each commit, used to read as a foreign copy of SQLite: about 1 open in 5 was refused"
    url = str(tmp_path/'q.db')
    open_queue(url).close()
    w = open_queue(url); w._listen(); w.close()  # this process's watcher, as a pool's first wait starts it
    p = subprocess.Popen([sys.executable, '-c', f"""
from concurrency_demo.store import open_queue
import time
q = open_queue({url!r}); end = time.time() + 2
while time.time() < end: q.enqueue(1)
"""])
    refused,n,end = [],0,time.time()+2
    try:
        while time.time() < end:
            try: open_queue(url).close()
            except ValueError as e: refused.append(str(e))
            n += 1
    finally: p.wait(30)
    assert n > 100 and not refused, f'{len(refused)} of {n} opens refused: {refused[:1]}'
