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
