#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto.

`nbdev-readme` needs Quarto, which this project's machines can't install, so this does what it does for a
markdown-heavy index: nbconvert's markdown exporter on the notebook as committed (its saved outputs, no execution),
after dropping what a reader of the docs would not see (`#| hide` and `#| include: false` cells, `#| echo: false`
inputs, `#| output: false` outputs, `#| hide_line` lines) and every `#|` directive line, and with relative links to
doc pages (`dbqueue.html`) made absolute on the docs site, as nbdev's readme filter does.

    python tools/make_readme.py          # write README.md
    python tools/make_readme.py --check  # exit 1, showing a diff, if README.md is not what the notebook gives
"""
import argparse, difflib, re, sys
from pathlib import Path

import nbformat
from fastcore.nbio import NbCell
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->'
_re_link = re.compile(r'(\]\()([^)\s]+)(\))')  # inline markdown links: [text](target)
_re_hide_line = re.compile(r'^.*#\|\s*hide_line\s*\n?', re.MULTILINE)

def doc_url(root=ROOT):
    "The docs site's base URL from pyproject.toml, via nbdev's config"
    from nbdev.config import get_config
    return get_config(root).doc_url

def abs_links(md, base):
    "Make relative links to doc pages (`.html`, `.ipynb`, `.qmd`) absolute under `base`, as nbdev's readme filter does"
    from nbdev.readme_filter import doc_link
    return _re_link.sub(lambda m: m.group(1) + doc_link(m.group(2), base) + m.group(3), md)

def visible_nb(path):
    "The notebook at `path` as a reader of the docs sees it: hidden cells, inputs, outputs and directives removed"
    nb = nbformat.read(path, as_version=4)
    cells = []
    for i,c in enumerate(nb.cells):
        if c.cell_type == 'code':
            fc = NbCell(i, dict(c))  # fastcore parses directives, from `#|` comments and from metadata alike
            d = fc.directives
            if 'hide' in d or d.get('include') == 'false': continue
            fc.remove_directives()
            c.source = _re_hide_line.sub('', fc.source)
            if d.get('output') == 'false': c.outputs = []
            if d.get('echo') == 'false': c.source = ''
            if not c.source.strip() and not c.outputs: continue
        cells.append(c)
    nb.cells = cells
    return nb

def make_readme(nb_path=ROOT/'nbs/index.ipynb', base=None):
    "README.md's text, generated from `nb_path`"
    nb = visible_nb(nb_path)
    nb.metadata.setdefault('language_info', {}).setdefault('name', 'python')  # fence code as ```python
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = abs_links(md, base or doc_url())
    md = re.sub(r'\n{3,}', '\n\n', md).strip()
    return f'{HEADER}\n\n{md}\n'

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='exit 1 with a diff if README.md differs; write nothing')
    a = p.parse_args(argv)
    new, readme = make_readme(), ROOT/'README.md'
    old = readme.read_text() if readme.exists() else ''
    if a.check:
        if old == new: return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   'README.md (committed)', 'README.md (from nbs/index.ipynb)'))
        print('\nREADME.md is stale: run `python tools/make_readme.py` and commit README.md', file=sys.stderr)
        return 1
    if old != new: readme.write_text(new)
    return 0

if __name__ == '__main__': sys.exit(main())
