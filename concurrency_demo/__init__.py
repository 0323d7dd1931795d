__version__ = "0.0.1"

# The main names, importable from the package top level. Each loads its module on first use (PEP 562), so
# `import concurrency_demo` stays lean: `PgQueue` alone brings psycopg, and no web or LLM stack loads here.
_lazy = dict(Job='store', LeaseLost='store', Store='store', FakeClock='store', open_queue='store', Queues='store', statuses='store',
             StoreUnavailable='store', Queue='dbqueue', PgQueue='pgqueue', ThreadWorkers='threads', AsyncWorkers='aio',
             ProcessWorkers='procs', Tasks='tasks', JobFailed='tasks', Retry='worker', NoRetry='worker', current_job='worker')
__all__ = ['__version__', *_lazy]

def __getattr__(name):
    if name not in _lazy: raise AttributeError(f"module 'concurrency_demo' has no attribute {name!r}")
    from importlib import import_module
    return getattr(import_module(f'concurrency_demo.{_lazy[name]}'), name)

def __dir__(): return sorted([*globals(), *_lazy])
