"""The notebooks as saved: outputs free of machine details, and small enough to read and to clone.

A saved output is what a learner sees before running anything and what the docs site shows, so it must not show
this machine (a temp path, a worker id made of host and pid, a memory address, a port picked at random), a
traceback that a passing run printed, or multiprocess's resource-tracker warnings. Each failure names the notebook
and the cell id (`nbs/NAME.ipynb`, cell `id`), which JupyterLab shows in the cell's metadata.
"""
import base64, hashlib, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
NOTEBOOKS = sorted(NBS.glob('*.ipynb'))
KB = 1024

def cells(path):
    return json.loads(path.read_text(encoding='utf-8'))['cells']

def out_text(o):
    "The text of output `o` (a stream, a value or a display, in each of its text forms), as a reader would see it"
    if o.get('output_type') == 'error': return '\n'.join([o.get('ename', ''), o.get('evalue', ''), *o.get('traceback', [])])
    parts = [o.get('text', '')] + [v for k,v in o.get('data', {}).items() if k.startswith('text/') or k.endswith('json')]
    return '\n'.join(''.join(p) if isinstance(p, list) else p if isinstance(p, str) else json.dumps(p) for p in parts)

LEAKS = {  # what a saved output must not show: a pattern, and what it means
    'a temp path': re.compile(r'/tmp/|/var/folders/'),
    'a worker id made of host and pid': re.compile(r'\b[A-Za-z0-9][\w.]*-\d{1,7}-[0-9a-f]{6}\b'),
    'a memory address': re.compile(r'\b0x[0-9a-fA-F]{6,}\b'),
    'a traceback': re.compile(r'Traceback \(most recent call last\)'),
    "multiprocess's resource-tracker warning": re.compile(r'resource_tracker|leaked semaphore'),
}
_re_port = re.compile(r"""(?:127\.0\.0\.1|localhost|0\.0\.0\.0)(?::|'?,\s*)(\d{2,5})\b""")

def fixed_ports(cs):
    "Ports written in the notebook's code (a lesson's own choice, the same every run), and the console's default"
    return {'5001'} | {p for c in cs if c['cell_type'] == 'code' for p in re.findall(r'\b\d{4,5}\b', ''.join(c['source']))}

def leaks(path):
    "`(cell id, what, excerpt)` for each machine detail in the saved outputs of notebook `path`"
    cs, res = cells(path), []
    ports = fixed_ports(cs)
    for c in cs:
        for o in c.get('outputs', []):
            txt = out_text(o)
            found = [(what, m) for what,p in LEAKS.items() for m in p.finditer(txt)]
            found += [('a port picked at random', m) for m in _re_port.finditer(txt) if m[1] not in ports]
            res += [(c.get('id'), what, txt[max(0, m.start()-60):m.end()+40]) for what,m in found]
    return res

@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_free_of_machine_details(path):
    found = leaks(path)
    assert not found, f'{path.name}: saved outputs show machine details; fix the cells and re-run the notebook:\n' + \
        '\n'.join(f'  cell {cid}: {what}: ...{ex!r}...' for cid,what,ex in found)

def test_leak_patterns():
    "The patterns catch what they are for, and leave a lesson's own fixed port alone"
    txt = "db at /tmp/cdemo-00-x1/q.db; worker vm-1234-ab12cd; <Event object at 0x7f3c8dfeab50>"
    assert {w for w,p in LEAKS.items() if p.search(txt)} == {'a temp path', 'a worker id made of host and pid', 'a memory address'}
    assert [m[1] for m in _re_port.finditer("http://127.0.0.1:54321/ and ('127.0.0.1', 8785)")] == ['54321', '8785']
    assert not LEAKS['a worker id made of host and pid'].search("worker demo-0, job chatcmpl-3 and 2024-01-05")
# ---- size: plots stored once, at normal resolution ----------------------------------------------------------

MAX_NB = {'08_benchmarks.ipynb': 250*KB}  # it used to embed every lesson's plot again, at high resolution
MAX_TOTAL = 2*KB*KB

def images(path):
    "`(cell id, md5, bytes)` of each image stored in notebook `path`'s outputs"
    return [(c.get('id'), hashlib.md5(b).hexdigest(), len(b)) for c in cells(path) for o in c.get('outputs', [])
            for k,v in o.get('data', {}).items() if k.startswith('image/') and k != 'image/svg+xml'
            for b in [base64.b64decode(''.join(v) if isinstance(v, list) else v)]]

def test_notebook_sizes():
    sizes = {p.name: p.stat().st_size for p in NOTEBOOKS}
    over = {n: f'{s/KB:.0f} KB > {MAX_NB[n]/KB:.0f} KB' for n,s in sizes.items() if n in MAX_NB and s > MAX_NB[n]}
    assert not over, f'notebooks over their size limit: {over}'
    assert sum(sizes.values()) < MAX_TOTAL, f'the notebooks together are {sum(sizes.values())/KB/KB:.2f} MB (limit 2 MB)'

def test_each_plot_stored_once():
    "No image is stored twice, in one notebook or across them: show a plot in one lesson and link to it from others"
    seen, dups = {}, []
    for p in NOTEBOOKS:
        for cid,h,_ in images(p):
            if h in seen: dups.append(f'{p.name} cell {cid} repeats {seen[h]}')
            else: seen[h] = f'{p.name} cell {cid}'
    assert not dups, 'the same image is stored more than once:\n' + '\n'.join(dups)

def test_plots_at_normal_resolution():
    "A PNG in an output is at most about 1200 px wide (a 12-inch figure at 100 dpi), not a print-resolution export"
    big = []
    for p in NOTEBOOKS:
        for c in cells(p):
            for o in c.get('outputs', []):
                if v := o.get('data', {}).get('image/png'):
                    b = base64.b64decode(''.join(v) if isinstance(v, list) else v)
                    w = int.from_bytes(b[16:20], 'big')
                    if w > 1200: big.append(f'{p.name} cell {c.get("id")}: {w} px wide')
    assert not big, 'plots stored at high resolution (draw them at dpi ~80-100):\n' + '\n'.join(big)
