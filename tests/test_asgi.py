"""FastAPI and Starlette apps with the workers in `tasks.lifespan` (issue "FastAPI"), each served by real uvicorn
in a process of its own, on both stores: many requests that enqueue and wait, a fast route while slow jobs run,
SIGTERM with jobs in flight, and the SSE stream of a job's progress."""
import asyncio, json, os, signal, socket, statistics, subprocess, sys, time
from pathlib import Path
import httpx2, pytest
from concurrency_demo import Tasks
from concurrency_demo.store import open_queue
from concurrency_demo.asgi import plan_pools, lifespan
from helpers import wait_until
sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.timeout(180)
HERE = Path(__file__).parent

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(params=['fastapi', 'starlette'])
def server(request, store):
    "`(base URL, store URL, process)` of `asgi_defs.app` of either kind, served by uvicorn with its workers"
    port = free_port()
    env = dict(os.environ, CDEMO_TEST_DB=store, CDEMO_TEST_APP=request.param, CDEMO_TEST_STOP='2')
    p = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'asgi_defs:app', '--app-dir', str(HERE), '--host', '127.0.0.1',
                          '--port', str(port), '--log-level', 'warning'], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}'
    def up():
        try: return httpx2.get(url + '/health', timeout=1).status_code == 200
        except httpx2.TransportError: return p.poll() is not None and pytest.fail(p.stdout.read())
    wait_until(up, timeout=60, every=0.05)
    yield url, store, p
    if p.poll() is None: p.send_signal(signal.SIGTERM)
    try: p.wait(30)
    except subprocess.TimeoutExpired: p.kill(); p.wait()

def test_200_concurrent_requests_enqueue_and_await(server):
    "200 requests at once, each enqueueing a task and awaiting its result: every one gets its own right answer"
    url, store, _ = server
    async def main():
        async with httpx2.AsyncClient(base_url=url, timeout=120, limits=httpx2.Limits(max_connections=200)) as c:
            return await asyncio.gather(*(c.post('/double', params=dict(n=i, aio=str(i % 2 == 0).lower())) for i in range(200)))
    rs = asyncio.run(main())
    assert [r.status_code for r in rs] == [200]*200
    assert [r.json()['result'] for r in rs] == [2*i for i in range(200)]
    assert len({r.json()['id'] for r in rs}) == 200
    q = open_queue(store, name='default')
    assert q.stats()['running'] == 0 and open_queue(store, name='io').stats()['running'] == 0

def test_fast_route_stays_fast_while_slow_jobs_run(server):
    "Slow blocking jobs run in the lifespan's worker threads: the event loop stays free, a fast route's p99 stays low"
    url, store, _ = server
    ids = [httpx2.post(url + '/sleepy', params=dict(secs=1.5)).json()['id'] for _ in range(8)]
    q = open_queue(store, name='slow')
    wait_until(lambda: q.stats()['running'] >= 4, timeout=20)
    ms = []
    with httpx2.Client(base_url=url) as c:
        for _ in range(60):
            t = time.perf_counter(); assert c.get('/health').status_code == 200; ms.append((time.perf_counter()-t)*1000)
            time.sleep(0.01)
    assert q.stats()['running'] >= 1  # still busy when we finished measuring
    p99 = statistics.quantiles(ms, n=100, method='inclusive')[98]
    assert p99 < 250, (p99, sorted(ms)[-5:])  # a blocking job on the loop would cost ≥ 1500 ms

def test_sigterm_leaves_no_job_running(server):
    "SIGTERM with jobs in flight: uvicorn runs the lifespan's end, the pools stop, unfinished jobs are queued again"
    url, store, p = server
    ids = [httpx2.post(url + '/sleepy', params=dict(secs=30)).json()['id'] for _ in range(6)]
    q = open_queue(store, name='slow')
    wait_until(lambda: q.stats()['running'] == 4, timeout=20)
    t = time.monotonic(); p.send_signal(signal.SIGTERM); assert p.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert time.monotonic() - t < 15
    st = q.stats()
    assert (st['running'], st['queued']) == (0, 6), st
    assert all(q.get(i).status == 'queued' for i in ids)

def test_sse_progress_in_order_and_ends_with_the_job(server):
    "The events stream of a job: progress events in order, then the `done` event, and the stream ends"
    url, store, _ = server
    id = httpx2.post(url + '/steps', params=dict(n=5)).json()['id']
    evs, ev, t = [], None, time.monotonic()
    with httpx2.stream('GET', f'{url}/jobs/{id}/events', timeout=30) as s:
        assert s.headers['content-type'].startswith('text/event-stream')
        for line in s.iter_lines():
            if line.startswith('event: '): ev = line[7:]
            elif line.startswith('data: '): evs.append((ev, json.loads(line[6:])))
    assert time.monotonic() - t < 20   # the stream ended by itself
    assert evs[-1][0] == 'done' and evs[-1][1]['result'] == 5 and evs[-1][1]['progress'] == 1.0
    prog = [d['progress'] for e,d in evs if d['progress'] is not None]
    assert prog == sorted(prog) and len(prog) >= 3, evs
    notes = [d['note'] for e,d in evs if d['note']]
    assert notes == sorted(notes, key=lambda n: int(n.split()[1])), notes
    assert [e for e,d in evs][:-1] == [d['status'] for e,d in evs][:-1] and set(e for e,d in evs[:-1]) <= {'queued', 'running'}

def test_plan_pools_and_bad_sizes(tmp_path):
    "Which pool runs which queue; sizes that leave a queue without a pool are one-line errors"
    t = Tasks(tmp_path/'p.db')
    @t.task
    def a(): pass
    @t.task(queue='llm')
    async def b(): pass
    assert plan_pools(t) == {'default': 'threads', 'llm': 'async'}
    assert plan_pools(t, threads=0, processes=2) == {'default': 'processes', 'llm': 'async'}
    assert plan_pools(t, concurrency=0) == {'default': 'threads', 'llm': 'threads'}
    for kw, msg in [(dict(processes=2), "no queue runs on processes"), (dict(threads=0, concurrency=0), "has no pool"),
                    (dict(queues={'llm': 'greenlets'}), "a queue runs on one of"), (dict(threads=-1), "threads must be"),
                    (dict(queues={'default': 'processes'}), "processes=0")]:
        with pytest.raises(ValueError, match=msg.replace('(', r'\(')): plan_pools(t, **kw)
    with pytest.raises(TypeError, match="queues must be a dict"): plan_pools(t, queues=['cpu'])
    with pytest.raises(TypeError, match="queues must be a dict"): lifespan(t, queues='processes')
    with pytest.raises(TypeError, match="tasks must be a `Tasks` registry, not builtin_function_or_method"): lifespan(print)

def test_lifespan_without_workers_and_composed(tmp_path):
    "workers=False starts nothing; the lifespan nests inside an app's own, and stops the pools it started"
    t = Tasks(tmp_path/'l.db')
    @t.task
    def a(x: int) -> int: return x+1
    class App: pass
    async def main():
        app = App(); app.state = App()
        async with lifespan(t, workers=False)(app): assert app.state.task_pools == []
        order = []
        async def mine(app):
            order.append('open')
            async with t.lifespan(threads=1, concurrency=0)(app):
                h = await a.aenqueue(1); order.append(await h.aresult(timeout=10))
                yield
            order.append('closed')
        import contextlib
        async with contextlib.asynccontextmanager(mine)(app): pools = app.state.task_pools
        assert order == ['open', 2, 'closed'] and len(pools) == 1 and not pools[0].threads[0].is_alive()
    asyncio.run(main())

def test_run_workers_apart(store, monkeypatch):
    "An app with `workers=False` only enqueues; `run_workers` in a process of its own runs the jobs, and stops on SIGTERM"
    env = dict(os.environ, CDEMO_TEST_DB=store)
    p = subprocess.Popen([sys.executable, '-c', 'from asgi_defs import tasks; from concurrency_demo.asgi import run_workers; run_workers(tasks, threads=2, stop_timeout=1)'],
                         cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        monkeypatch.setenv('CDEMO_TEST_DB', store)
        import importlib, asgi_defs; importlib.reload(asgi_defs)
        t = asgi_defs.tasks
        async def main():
            async with t.lifespan(workers=False)(None):
                hs = [await asgi_defs.double.aenqueue(i) for i in range(5)] + [await asgi_defs.adouble.aenqueue(7)]
                return [await h.aresult(timeout=60) for h in hs]
        assert asyncio.run(main()) == [0, 2, 4, 6, 8, 14]
        h = asgi_defs.sleepy.enqueue(30)
        q = open_queue(store, name='slow')
        wait_until(lambda: q.stats()['running'] == 1, timeout=20)
        p.send_signal(signal.SIGTERM); assert p.wait(30) == 0, p.stdout.read()
        assert q.get(h.id).status == 'queued'
    finally:
        if p.poll() is None: p.kill()

def test_lifespan_with_processes(store):
    "`processes=` runs the sync queues on worker processes (the registry's tasks importable), and stops them with the app"
    import task_defs as td
    t = td.make(store)
    class App: pass
    async def main():
        app = App(); app.state = App()
        async with t.lifespan(threads=0, concurrency=0, processes=2, stop_timeout=2)(app):
            assert [type(p).__name__ for p in app.state.task_pools] == ['ProcessWorkers']
            hs = [await t['add'].aenqueue(i, 1) for i in range(6)]
            res = [await h.aresult(timeout=60) for h in hs]
        return res, app.state.task_pools[0]
    res, pool = asyncio.run(main())
    assert res == [i+1 for i in range(6)]
    assert not any(p.is_alive() for p in pool.procs)
    assert open_queue(store, name='default').stats()['running'] == 0
