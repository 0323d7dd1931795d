#!/usr/bin/env python
"""Store the notebooks' plots small: re-encode each PNG output as a 256-colour palette PNG when that is smaller.

A plot has few colours, so the palette keeps it as it looks (antialiased edges included) at a third of the bytes; run it
after saving outputs (`python tools/shrink_images.py [NAME.ipynb ...]`, default every notebook in nbs/), then nbdev-clean.
It is idempotent: a PNG already in palette mode is left as it is. Prints the bytes saved per notebook."""
import base64, io, json, sys
from pathlib import Path
from PIL import Image

NBS = Path(__file__).resolve().parent.parent/'nbs'

def shrink(b:bytes)->bytes:
    "`b` (a PNG) as a palette PNG, or `b` itself if that is no smaller or it is one already"
    im = Image.open(io.BytesIO(b))
    if im.mode == 'P': return b
    out = io.BytesIO(); im.convert('RGB').quantize(256).save(out, 'PNG', optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(b) else b

def main(names):
    for p in ([NBS/n.removeprefix('nbs/') for n in names] or sorted(NBS.glob('*.ipynb'))):
        text = p.read_text(); nb = json.loads(text); saved = 0
        for c in nb['cells']:
            for o in c.get('outputs', []):
                if 'image/png' not in o.get('data', {}): continue
                old = base64.b64decode(o['data']['image/png']); new = shrink(old)
                if new is not old: o['data']['image/png'] = base64.b64encode(new).decode() + '\n'; saved += len(old) - len(new)
        if saved:
            p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
            print(f'{p.name}: {saved/1024:.0f} KB saved')

if __name__ == '__main__': main(sys.argv[1:])
