"""Apps of the FastAPI/Starlette tests (issue "FastAPI"): one FastAPI app and one plain Starlette app over the same
registry, each with the workers in `tasks.lifespan`. Served by uvicorn in a process of its own (`uvicorn asgi_defs:app`);
the queue's location comes from `CDEMO_TEST_DB`, the app's kind from `CDEMO_TEST_APP`."""
import asyncio, json, os, time
from concurrency_demo import Tasks, current_job
from concurrency_demo.tasks import Handle

tasks = Tasks(os.environ.get('CDEMO_TEST_DB', 'asgi-test.db'))

@tasks.task
def double(n: int) -> int: return 2*n

@tasks.task(queue='io')
async def adouble(n: int) -> int:
    await asyncio.sleep(0.01)
    return 2*n

@tasks.task(queue='slow')
def sleepy(secs: float) -> float:
    "Blocking work: a thread of the pool sleeps"
    time.sleep(secs); return secs

@tasks.task
def steps(n: int, secs: float = 0.05) -> int:
    for i in range(n):
        time.sleep(secs); current_job().progress((i+1)/n, f'step {i+1} of {n}')
    return n

kw = dict(threads=4, concurrency=50, stop_timeout=float(os.environ.get('CDEMO_TEST_STOP', 2)))

def make_fastapi():
    from fastapi import FastAPI
    from fastapi.sse import EventSourceResponse, ServerSentEvent
    app = FastAPI(lifespan=tasks.lifespan(**kw))
    @app.get('/health')
    async def health(): return {'ok': True}
    @app.post('/double')
    async def dbl(n: int, aio: bool = False):
        h = await (adouble if aio else double).aenqueue(n)
        return {'id': h.id, 'result': await h.aresult(timeout=60)}
    @app.post('/sleepy', status_code=202)
    async def slp(secs: float): return {'id': (await sleepy.aenqueue(secs)).id}
    @app.post('/steps', status_code=202)
    async def stp(n: int): return {'id': (await steps.aenqueue(n)).id}
    @app.get('/jobs/{id}/events', response_class=EventSourceResponse)
    async def events(id: int):
        async for e in Handle(tasks, id).aevents(): yield ServerSentEvent(data=e, event=e['status'])
    return app

def make_starlette():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route
    async def health(req): return JSONResponse({'ok': True})
    async def dbl(req):
        h = await (adouble if req.query_params.get('aio') == 'true' else double).aenqueue(int(req.query_params['n']))
        return JSONResponse({'id': h.id, 'result': await h.aresult(timeout=60)})
    async def slp(req): return JSONResponse({'id': (await sleepy.aenqueue(float(req.query_params['secs']))).id}, status_code=202)
    async def stp(req): return JSONResponse({'id': (await steps.aenqueue(int(req.query_params['n']))).id}, status_code=202)
    async def events(req):
        async def gen():
            async for e in Handle(tasks, int(req.path_params['id'])).aevents(): yield f"event: {e['status']}\ndata: {json.dumps(e)}\n\n"
        return StreamingResponse(gen(), media_type='text/event-stream')
    return Starlette(routes=[Route('/health', health), Route('/double', dbl, methods=['POST']), Route('/sleepy', slp, methods=['POST']),
                             Route('/steps', stp, methods=['POST']), Route('/jobs/{id:int}/events', events)],
                     lifespan=tasks.lifespan(**kw))

app = make_starlette() if os.environ.get('CDEMO_TEST_APP') == 'starlette' else make_fastapi()
