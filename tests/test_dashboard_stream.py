"The dashboard's one stream, over real uvicorn, on both stores: a job enqueued elsewhere arrives within a second, a row is sent again only when it changed"
import http.client, re, socket, threading, time
from urllib.parse import urlsplit
import pytest
uvicorn = pytest.importorskip('uvicorn')
from concurrency_demo.dashboard import dashboard
from concurrency_demo.store import open_queue

@pytest.fixture
def served(store):
    "The dashboard on a free port in a thread; yields (base URL, database URL)"
    open_queue(store).close()
    srv = uvicorn.Server(uvicorn.Config(dashboard(store), host='127.0.0.1', port=0, log_level='warning'))
    t = threading.Thread(target=srv.run, daemon=True); t.start()
    end = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < end, 'server did not start'
        time.sleep(0.02)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}",store
    srv.should_exit = True; t.join(10)

class Events:
    "Read an SSE stream in a thread: `(time, event, data)` as they arrive"
    def __init__(self, url):
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.conn.request('GET', f'{u.path}?{u.query}')
        self.got,self.r = [],self.conn.getresponse()
        threading.Thread(target=self._read, daemon=True).start()
    def _read(self):
        ev,data = 'message',[]
        try:
            for line in self.r:
                line = line.decode().rstrip('\n')
                if line.startswith('event: '): ev = line[7:]
                elif line.startswith('data: '): data.append(line[6:])
                elif not line and data: self.got.append((time.monotonic(), ev, '\n'.join(data))); ev,data = 'message',[]
        except Exception: pass
    def rows(self, i): return [(t, d) for t,e,d in self.got if e == 'row' and f'id="job-{i}"' in d]
    def close(self): self.conn.sock.shutdown(socket.SHUT_RDWR)  # the reader (blocked in a read) sees the end at once

def test_new_and_changed_rows(served):
    url,db = served
    q = open_queue(db, name='s')
    old = q.enqueue('already there')
    ev = Events(f'{url}/stream?since={time.time()}')
    time.sleep(0.6)  # its first look
    assert ev.rows(old) == [] and [e for _,e,_ in ev.got] == ['counts']  # what the page already shows isn't sent again
    t = time.monotonic(); i = q.enqueue({'new': 1})
    while not ev.rows(i) and time.monotonic() - t < 5: time.sleep(0.01)
    assert ev.rows(i) and ev.rows(i)[0][0] - t < 1.0, 'a new job took more than a second to arrive'
    time.sleep(1)
    assert len(ev.rows(i)) == 1  # not sent again while unchanged
    q.cancel(i)
    j = q.dequeue(); q.ack(j, 'the answer')
    assert j.id == old
    end = time.monotonic() + 5
    while (len(ev.rows(i)) < 2 or not ev.rows(old)) and time.monotonic() < end: time.sleep(0.01)
    assert len(ev.rows(i)) == 2 and 'status cancelled' in ev.rows(i)[-1][1]
    assert len(ev.rows(old)) == 1 and 'the answer' in ev.rows(old)[0][1] and 'status done' in ev.rows(old)[0][1]
    end = time.monotonic() + 3
    while not re.search(r'queue=s&amp;status=done">1<', [d for _,e,d in ev.got if e == 'counts'][-1]) and time.monotonic() < end: time.sleep(0.05)
    assert re.search(r'queue=s&amp;status=done">1<', [d for _,e,d in ev.got if e == 'counts'][-1])
    ev.close(); q.close()

def test_job_page_stream(served):
    url,db = served
    q = open_queue(db, name='s')
    i = q.enqueue('watch me')
    ev = Events(f'{url}/stream?job={i}&since={time.time()}')
    time.sleep(0.5)
    assert [e for _,e,_ in ev.got if e == 'job'] == []
    q.cancel(i)
    end = time.monotonic() + 5
    while not [d for _,e,d in ev.got if e == 'job'] and time.monotonic() < end: time.sleep(0.01)
    jobs = [d for _,e,d in ev.got if e == 'job']
    assert len(jobs) == 1 and 'status cancelled' in jobs[0] and 'id="job-detail"' in jobs[0]
    ev.close(); q.close()

def test_busy_workers_shown(served):
    "The counts say which workers run jobs now"
    url,db = served
    q = open_queue(db, name='s', worker='worker-on-host-a')
    q.enqueue_many(['a', 'b'])
    ev = Events(f'{url}/stream?since={time.time()}')
    time.sleep(0.3)
    q.dequeue(); q.dequeue()
    end = time.monotonic() + 5
    last = lambda: ([d for _,e,d in ev.got if e == 'counts'] or [''])[-1]
    while 'worker-on-host-a' not in last() and time.monotonic() < end: time.sleep(0.05)
    assert 'Running now:' in last() and 'worker-on-host-a</span> (2 s)' in last()
    ev.close(); q.close()
