"Shared fixtures: `store`, a fresh queue URL on each store the queue runs on."
import pytest

STORES = ['sqlite']

@pytest.fixture(params=STORES)
def store(request, tmp_path):
    "A fresh, empty queue location: a SQLite file in `tmp_path`"
    yield str(tmp_path/'q.db')
