"""Shared fixtures: `store`, a fresh queue URL on each store (SQLite, PostgreSQL), and the server behind it.

PostgreSQL is never skipped: CI starts a server and names it in `CDEMO_PG_DSN`; without it, the session starts a
throwaway cluster of its own (`pg_tmp_cluster`, lesson 09) and removes it at the end.
"""
import os
import pytest
from concurrency_demo.pgqueue import pg_database, pg_tmp_cluster

@pytest.fixture(scope='session')
def pg_server():
    "URL of a PostgreSQL server for this test session: `CDEMO_PG_DSN`, else a throwaway cluster"
    if dsn := os.environ.get('CDEMO_PG_DSN'): yield dsn
    else:
        with pg_tmp_cluster() as dsn: yield dsn

@pytest.fixture(params=['sqlite', 'postgres'])
def store(request, tmp_path):
    "A fresh, empty queue location: a SQLite file in `tmp_path`, or a new PostgreSQL database"
    if request.param == 'sqlite': yield str(tmp_path/'q.db')
    else:
        with pg_database(request.getfixturevalue('pg_server'), 'cdemo_test') as url: yield url

@pytest.fixture
def qurl(store):
    "`(url, queue_kwargs)` of a fresh, empty queue on each store"
    return store, {}

@pytest.fixture(scope='module')
def cluster():
    "A throwaway PostgreSQL server of the test module's own, which its tests stop and restart (never the shared `CDEMO_PG_DSN` one)"
    with pg_tmp_cluster() as c: yield c
