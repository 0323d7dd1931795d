"""The docs, checked offline: nbdev's processing, rendered to HTML, looked at in a real browser.

Quarto can't be installed on this project's machines, so this does the part of `nbdev-docs` that can go wrong in
our hands: `nbdev-proc-nbs` (nbdev's own notebook processing: frontmatter from the H1, `show_doc` for every export,
hidden cells and directives removed) runs on a copy of the project, nbconvert renders each processed notebook to
HTML, and headless Chromium opens every page and checks what a reader would see: the title, the API docs and the
outputs. One test per notebook in nbs/, so lessons are checked as they land; index.ipynb's page is screenshotted
to artifacts/docs-index.png.
"""
import ast, os, re, shutil, subprocess, sys
from pathlib import Path

import nbformat, pytest, yaml
from fastcore.nbio import NbCell
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
pytestmark = pytest.mark.timeout(600)  # the first test pays for processing every notebook

def notebooks():
    "The notebooks nbdev builds pages from (it skips names starting with `_` or `.`)"
    return sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

def html_name(nb):
    "The page nbdev makes of notebook `nb`: `00_dbqueue.ipynb` → `dbqueue.html`"
    from nbdev.config import nbpath2html
    return nbpath2html(Path(nb)).name

def nb_title(path):
    "The H1 that opens notebook `path`'s first markdown cell, as a page shows it (inline code marks dropped)"
    nb = nbformat.read(path, as_version=4)
    md = next((c.source for c in nb.cells if c.cell_type == 'markdown' and c.source.strip()), '')
    m = re.match(r'\s*#\s+(.+)', md)
    return re.sub(r'`([^`]*)`', r'\1', m.group(1)).strip() if m else None

def public_exports(path):
    "Public functions and classes that notebook `path` exports: nbdev adds a `show_doc` for each"
    res = []
    for i,c in enumerate(nbformat.read(path, as_version=4).cells):
        if c.cell_type != 'code': continue
        d = NbCell(i, dict(c)).directives
        if not ({'export', 'exports'} & set(d)) or 'hide' in d: continue
        try: tree = ast.parse(c.source)
        except SyntaxError: continue
        res += [o.name for o in tree.body if isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and not o.name.startswith('_')]
    return res

_re_sd = re.compile(r'^show_doc\(\s*([\w.]+)\s*[,)](.*)$', re.MULTILINE)

def documented(src):
    "Names that `show_doc` calls in code `src` document under their own name (a `name=` argument renames the header)"
    return [nm for nm,rest in _re_sd.findall(src) if 'name=' not in rest]

# ---- build: nbdev-proc-nbs on a copy, then nbconvert ------------------------------------------------------------

def _copy_project(dst):
    "What `nbdev-proc-nbs` reads: working here keeps its `_proc/`, `_modidx.py` and `nbdev.yml` writes out of the tree"
    dst.mkdir(parents=True)
    shutil.copy(ROOT/'pyproject.toml', dst)
    junk = shutil.ignore_patterns('*.db', '*.db-*', '*-wal', '*-shm', '*.sqlite*', '.ipynb_checkpoints', '__pycache__',
                                  '_proc', '_docs', '.last_checked')
    shutil.copytree(NBS, dst/'nbs', ignore=junk)
    shutil.copytree(ROOT/'concurrency_demo', dst/'concurrency_demo', ignore=junk)

def _proc_nbs(proj, env, *args):
    return subprocess.run(['nbdev-proc-nbs', '--n-workers', '2', *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=480)

def proc_all(proj, bindir):
    "Run `nbdev-proc-nbs` in `proj`; return `{notebook: error}` for those it could not process"
    env = dict(os.environ)
    # nbdev-proc-nbs only checks that Quarto is on PATH (and would try to download it otherwise); it never runs it
    if not shutil.which('quarto'):
        bindir.mkdir(exist_ok=True)
        (bindir/'quarto').write_text('#!/bin/sh\necho "quarto: not installed (stub from tests/test_docs.py)" >&2\nexit 1\n')
        (bindir/'quarto').chmod(0o755)
        env['PATH'] = f"{bindir}{os.pathsep}{env['PATH']}"
    r = _proc_nbs(proj, env)
    if r.returncode == 0: return {}
    # One broken notebook stops the batch: process the missing ones alone, so each failure is its own notebook's
    errs = {}
    for nb in notebooks():
        if (proj/'_proc'/nb).exists(): continue
        r = _proc_nbs(proj, env, '--file-glob', nb)
        if r.returncode or not (proj/'_proc'/nb).exists(): errs[nb] = (r.stdout + r.stderr)[-4000:]
    return errs or {'*': (r.stdout + r.stderr)[-4000:]}

_cell_keys = {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}
_re_attrs = re.compile(r'(?<=[)\]])\{(?:[.#][\w-]+|[\w-]+=)[^{}\n]*\}')
_re_fm = re.compile(r'^---\s*\n(.*?)\n---\s*$', re.DOTALL)

def read_proc(path):
    "A notebook nbdev processed: it carries nbdev's own marks (`has_sd`), so don't log them as invalid"
    return nbformat.read(path, as_version=4, capture_validation_error={})

_re_nb_link = re.compile(r'(href=")([^"\s:#/]+\.ipynb)((?:#[^"]*)?")')

def page_links(html):
    "Links to notebooks (`00_dbqueue.ipynb#a`, which JupyterLab opens) made links to their pages, as Quarto does for a site"
    return _re_nb_link.sub(lambda m: m.group(1) + html_name(m.group(2)) + m.group(3), html)

def render(proc_nb, out_dir):
    "Render a processed notebook to HTML as Quarto would lay it out: title block, `echo: false` inputs hidden"
    nb = read_proc(proc_nb)
    fm, cells = {}, []
    for i,c in enumerate(nb.cells):
        for k in set(c) - _cell_keys: del c[k]  # nbdev's own marks (`has_sd`) are not part of the format,
        c.get('metadata', {}).pop('execution', None)  # nor are execnb's timings where it puts them
        if c.cell_type == 'raw' and not fm and (m := _re_fm.match(c.source.strip())):
            fm = yaml.safe_load(m.group(1)) or {}
            continue
        if c.cell_type == 'code':
            fc = NbCell(i, dict(c))
            d = fc.directives
            if 'hide' in d or d.get('include') == 'false': continue
            fc.remove_directives()
            c.source = fc.source
            if _re_sd.search(c.source): c.metadata.setdefault('tags', []).append('nbdev-showdoc')
            if d.get('echo') == 'false': c.metadata['transient'] = {'remove_source': True}
            if d.get('output') == 'false': c.outputs = []
            for o in c.get('outputs', []):  # pandoc's link attributes, as in show_doc's `[source](…){target="_blank"}`
                if 'text/markdown' in o.get('data', {}): o.data['text/markdown'] = _re_attrs.sub('', o.data['text/markdown'])
            if not c.source.strip() and not c.outputs: continue  # exported cells: nbdev moved them into show_doc
        cells.append(c)
    if 'title' in fm:
        head = f"# {fm['title']}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
        cells.insert(0, nbformat.v4.new_markdown_cell(head))
    nb.cells = cells
    exp = HTMLExporter(template_name='lab', embed_images=True)
    body, _ = exp.from_notebook_node(nb, resources={'metadata': {'name': fm.get('title', proc_nb.stem)}})
    body = page_links(body)  # in the text and in markdown outputs alike
    out = out_dir/fm.get('output-file', html_name(proc_nb.name))
    out.write_text(body, encoding='utf-8')
    return out

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "`{notebook: html path}` for every notebook nbdev could process, and `{notebook: error}` for the others"
    tmp = tmp_path_factory.mktemp('docs')
    proj, out = tmp/'proj', tmp/'html'
    _copy_project(proj)
    errors = proc_all(proj, tmp/'bin')
    out.mkdir()
    pages = {}
    for nb in notebooks():
        p = proj/'_proc'/nb
        if p.exists(): pages[nb] = render(p, out)
    return dict(pages=pages, errors=errors, proc=proj/'_proc')

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()

@pytest.fixture(scope='module')
def context(browser):
    "One browser context for all pages; any request off this machine fails at once (the pages must work offline)"
    ctx = browser.new_context(viewport={'width': 1100, 'height': 900})
    def _route(route):  # nbconvert's template asks a CDN for require.js and MathJax: fail fast instead of waiting
        if route.request.url.startswith(('http://', 'https://')): route.abort()
        else: route.continue_()
    ctx.route('**/*', _route)
    yield ctx
    ctx.close()

@pytest.fixture
def page(context):
    p = context.new_page()
    yield p
    p.close()

def page_for(site, nb):
    if nb not in site['pages']:
        err = site['errors'].get(nb) or site['errors'].get('*', '(no error recorded)')
        pytest.fail(f'nbdev-proc-nbs could not process {nb}:\n{err}')
    return site['pages'][nb]

# ---- the checks ---------------------------------------------------------------------------------------------

_docs_js = """() => [...document.querySelectorAll('.jp-OutputArea-output')].flatMap(o =>
    [...o.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => ({
        name: h.innerText.replace('¶', '').trim(),
        sig: [...o.querySelectorAll('pre')].map(p => p.innerText).join('\\n') })))"""

@pytest.mark.parametrize('nb', notebooks())
def test_page(nb, site, page):
    "The page shows its title, the API docs of what its notebook exports, and its outputs"
    from playwright.sync_api import expect
    page.goto(page_for(site, nb).as_uri())
    title = nb_title(NBS/nb)
    assert title, f'{nb} should open with an H1 in its first markdown cell (it becomes the page title)'
    h1 = page.locator('h1').first
    expect(h1).to_be_visible()
    assert h1.inner_text().replace('¶', '').strip() == title

    proc_src = '\n'.join(c.source for c in read_proc(site['proc']/nb).cells if c.cell_type == 'code')
    docs = documented(proc_src)
    if public_exports(NBS/nb): assert docs, f'{nb} exports {public_exports(NBS/nb)} but its page documents none'
    if docs:
        shown = {d['name']: d['sig'] for d in page.evaluate(_docs_js)}
        missing = [n for n in docs if n not in shown]
        assert not missing, f'no rendered doc header for {missing} on {nb} (headers in outputs: {list(shown)})'
        nosig = [n for n in docs if n.split('.')[-1] + '(' not in shown[n]]
        assert not nosig, f'no signature block under the doc header of {nosig} on {nb}'
        expect(page.locator('.jp-OutputArea-output :is(h2,h3,h4)', has_text=docs[0]).first).to_be_visible()

    outs = page.locator('.jp-Cell:not(.celltag_nbdev-showdoc) .jp-OutputArea-output')
    assert outs.count() >= 1, f'{nb} has no rendered outputs: run it and save it with its outputs'
    expect(outs.first).to_be_visible()

    if nb == 'index.ipynb':
        expect(page.locator('blockquote').first).to_be_visible()  # the `>` subtitle
        (ROOT/'artifacts').mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT/'artifacts/docs-index.png'), full_page=True)

@pytest.mark.parametrize('nb', [o for o in notebooks() if o != 'index.ipynb'])
def test_lesson_linked_from_index(nb, site, page):
    "The index's lesson map links each lesson's page, and following the link lands on it"
    from playwright.sync_api import expect
    page.goto(page_for(site, 'index.ipynb').as_uri())
    link = page.locator(f'a[href="{html_name(nb)}"]')
    assert link.count() >= 1, f'the lesson map in nbs/index.ipynb has no link to {html_name(nb)} ({nb})'
    page_for(site, nb)
    link.first.click()
    expect(page).to_have_url(re.compile(re.escape(html_name(nb)) + '$'))
    expect(page.locator('h1').first).to_have_text(re.compile(re.escape(nb_title(NBS/nb) or nb)))

_links_js = """() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"""

@pytest.mark.parametrize('nb', notebooks())
def test_links_resolve(nb, site, page):
    "Every link from a page to another page of the site lands on a page that exists (a lesson is linked as `NN_name.ipynb`)"
    page.goto(page_for(site, nb).as_uri())
    hrefs = {h for h in page.evaluate(_links_js) if h and not re.match(r'[a-z][\w+.-]*:|#|/', h)}
    out = page_for(site, nb).parent
    missing = sorted(h for h in hrefs if not (out/h.split('#')[0]).exists())
    assert not missing, f'{nb} links pages the site does not have: {missing} (link a lesson as NN_name.ipynb)'
    raw = [h for h in hrefs if '.ipynb' in h]
    assert not raw, f'{nb}: links left as notebooks after rendering: {raw}'

def test_page_links():
    test = page_links('<a href="00_dbqueue.ipynb">, <a href="08_benchmarks.ipynb#every-other-section">, <a href="https://e.org/a.ipynb">')
    assert test == '<a href="dbqueue.html">, <a href="benchmarks.html#every-other-section">, <a href="https://e.org/a.ipynb">'
