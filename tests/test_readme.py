"README.md is generated from nbs/index.ipynb, and its two commands are the ones that work"
import re, sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import make_readme

def bash_blocks(md): return [o.strip() for o in re.findall(r'^```bash\n(.*?)^```', md, re.MULTILINE | re.DOTALL)]

def test_readme_is_current():
    "`python tools/make_readme.py` was run after the last change to nbs/index.ipynb"
    assert (ROOT/'README.md').read_text() == make_readme.make_readme(), 'README.md is stale: python tools/make_readme.py'

def test_two_commands():
    "Exactly two commands: run the console, run every test; CI ends with the second, so it is the one CI runs"
    cmds = bash_blocks((ROOT/'README.md').read_text())
    assert cmds == ['pip install -e ".[console]" && cdemo serve', 'pip install -e ".[all,dev]" && python tools/test_all.py']
    ci = [l.strip() for l in (ROOT/'.ci/run').read_text().splitlines() if l.strip() and not l.lstrip().startswith('#')]
    assert ci[-1] == cmds[1], f'.ci/run should end with the README\'s test command, not {ci[-1]!r}'

def test_hidden_cells_and_directives_dropped(tmp_path):
    "What the docs hide stays out of the README; relative doc links point at the docs site"
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        md('# t\n\n> sub\n\nSee [the queue](dbqueue.html) and [fastlite](https://github.com/AnswerDotAI/fastlite).'),
        code('#| hide\nsecret = 1'),
        code('#| include: false\nalso_secret = 2'),
        code('#| echo: false\nprint("shown")', outputs=[nbformat.v4.new_output('stream', text='shown\n')]),
        code('#| eval: false\nx = 1 #| hide_line\ny = 2'),
        code('#| output: false\nz = 3', outputs=[nbformat.v4.new_output('stream', text='noise\n')])])
    nbformat.write(nb, tmp_path/'index.ipynb')
    res = make_readme.make_readme(tmp_path/'index.ipynb', base='https://example.org/docs/')
    assert res.startswith('<!-- generated from nbs/index.ipynb')
    for gone in ['secret', 'print("shown")', '#|', 'x = 1', 'noise']: assert gone not in res
    for kept in ['# t', '> sub', 'shown', 'y = 2', 'z = 3', '(https://example.org/docs/dbqueue.html)',
                 '(https://github.com/AnswerDotAI/fastlite)']: assert kept in res

def _own_app_files():
    "The README's 'Use it in your own app' files, by the name their first line gives them"
    sec = (ROOT/'README.md').read_text().split('## Use it in your own app', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'^```python\n(.*?)^```', sec, re.MULTILINE | re.DOTALL)
    return {re.match(r'# (\w+\.py):', b).group(1): b for b in blocks}

def _serve(tmp_path, name, src, port):
    import subprocess, sys, httpx2, time
    d = tmp_path/name.removesuffix('.py'); d.mkdir(); (d/name).write_text(src)
    p = subprocess.Popen([sys.executable, '-m', 'uvicorn', f"{name.removesuffix('.py')}:app", '--host', '127.0.0.1', '--port', str(port)],
                         cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(300):
        try: httpx2.get(f'http://127.0.0.1:{port}/', timeout=1); break
        except httpx2.TransportError:
            if p.poll() is not None: raise AssertionError(p.stdout.read())
            time.sleep(0.05)
    return p

def _free_port():
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_own_app_snippets_run_as_written(tmp_path):
    "The README's FastAPI and FastHTML apps run as written, in folders of their own, with their workers in the lifespan"
    import httpx2, signal
    files = _own_app_files()
    assert set(files) == {'app.py', 'main.py'}, list(files)
    assert len(files['app.py'].splitlines()) <= 30, 'the FastAPI app should stay about 20 lines'
    procs = []
    try:
        port = _free_port(); procs.append(_serve(tmp_path, 'app.py', files['app.py'], port)); u = f'http://127.0.0.1:{port}'
        r = httpx2.post(u + '/reports', params=dict(pages=3))
        assert r.status_code == 202
        assert httpx2.get(f"{u}/reports/{r.json()['id']}", timeout=30).json() == {'status': 'done', 'result': {'pages': 3}}
        assert httpx2.get(u + '/reports/999').status_code == 404
        dash = httpx2.get(u + '/jobs/', timeout=30)
        assert dash.status_code == 200 and 'report(3)' in dash.text, dash.text[:300]
        port = _free_port(); procs.append(_serve(tmp_path, 'main.py', files['main.py'], port)); u = f'http://127.0.0.1:{port}'
        assert '<form' in httpx2.get(u + '/').text
        r = httpx2.post(u + '/square', data=dict(n=7), headers={'HX-Request': 'true'}, timeout=30)
        assert r.status_code == 200 and '7² = 49' in r.text, r.text
    finally:
        for p in procs: p.send_signal(signal.SIGTERM); p.wait(30)
    for d in ('app', 'main'): assert (tmp_path/d/'jobs.db').exists()
