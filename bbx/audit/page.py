"""The report as one self-contained ``index.html``: inline CSS and JS, pictures as files beside it.

Nothing on the page points outside its folder (no CDN, no font, no URL), so it opens offline and
can be zipped and handed over. Every string that came from outside bbx (class names, file names,
paths, the command) is HTML-escaped where it is written.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from .._io import atomic_write
from .data import ClassGroup, Row

GALLERY_COLUMNS = (  # (header, row attribute or None, format): the sortable columns
    ("file", "name", None), ("class", "top1_name", None), ("p before", "prob_before", "{:.3f}"),
    ("p after", "prob_after", "{:.3f}"), ("φ", "phi", "{:.1f}"), ("undesirable %", "undesirable", "{:.2f}"),
    ("queries", "queries", "{:d}"), ("seconds", "seconds", "{:.2f}"),
)


@dataclass
class Report:
    """Everything the page shows; the optional parts are left out of a one-photo page."""

    title: str
    summary: str
    card: dict[str, Any]
    gallery: list[Row]
    settings: dict[str, Any] = field(default_factory=dict)
    classes: list[ClassGroup] = field(default_factory=list)
    class_images: dict[str, str] = field(default_factory=dict)  # class name -> mean heatmap file
    plots: dict[str, str] = field(default_factory=dict)  # caption -> plot file
    class_counts: list[tuple[str, int]] = field(default_factory=list)
    #: ground-truth localisation per method (header, rows of shown cells, legend); empty without --truth
    localisation: tuple[list[str], list[list[str]], str] | None = None


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def src(path: str) -> str:
    """A relative file path as a URL-safe, attribute-safe ``src``."""
    return esc(quote(path))


def write_page(folder: Path, report: Report) -> Path:
    return atomic_write(folder / "index.html", lambda fh: fh.write(render(report)), mode="w")


def render(r: Report) -> str:
    parts = [_head(r.title), f"<body><header><h1>{esc(r.title)}</h1><p class=summary>{esc(r.summary)}</p>",
             '<p id=broken class=warn hidden></p>', _nav(r), "</header><main>", _card(r.card, r.settings)]
    if r.class_counts:
        parts.append(_dataset(r))
    if r.plots:
        parts.append(_plots(r.plots))
    if r.localisation:
        parts.append(_localisation(*r.localisation))
    parts.append(_gallery(r.gallery, bool(r.classes)))
    if r.classes:
        parts.append(_classes(r.classes, r.class_images))
    parts.append(f"</main><script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def _head(title: str) -> str:
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_STYLE}</style>"
            "<script>function bbxBroken(img){img.classList.add('broken');var n=(+document.documentElement"
            ".getAttribute('data-broken-images')||0)+1;document.documentElement.setAttribute('data-broken-images',n);"
            "var b=document.getElementById('broken');if(b){b.hidden=false;b.textContent=n+' picture(s) did not load: "
            "were the files beside index.html moved?';}}</script></head>")


def _nav(r: Report) -> str:
    links = [("card", "Model"), *([("dataset", "Data set")] if r.class_counts else []),
             *([("plots", "Plots")] if r.plots else []),
             *([("localisation", "Localisation")] if r.localisation else []), ("gallery", "Gallery"),
             *([("classes", "Classes")] if r.classes else [])]
    return "<nav>" + " · ".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


def _kv(rows: Sequence[tuple[str, Any]]) -> str:
    return "<table class=kv>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _card(c: dict[str, Any], settings: dict[str, Any]) -> str:
    i, o = c["input"], c["output"]
    io_rows = "".join(f"<tr><td>{kind}</td><td>{esc(x['name'])}</td><td>{esc(x['shape'])}</td><td>{esc(x['type'])}</td></tr>"
                      for kind, xs in (("input", c["inputs"]), ("output", c["outputs"])) for x in xs)
    batch = "dynamic" if i.get("batch") is None else f"fixed {i['batch']}"
    conventions = [
        ("image input", esc(f"{i['name']}: layout {i['layout']}, {i['height']}×{i['width']}, {i['dtype']}, batch {batch}")),
        ("scores", esc(f"{o['name']}: {o['num_classes']} classes, {o['kind']}"
                       + (", index 0 = background" if o.get("background") else ""))),
    ]
    pre = "".join(f"<tr><td>{esc(p['field'])}</td><td><code>{esc(json.dumps(p['value']))}</code></td>"
                  f"<td>{esc(p['source'])}</td></tr>" for p in c["preprocess"])
    rows = [
        ("file", esc(c["file"])),
        *((k.replace("model_", ""), f"<code>{esc(v)}</code>") for k, v in c["identity"].items()),
        *conventions,
        ("labels", esc(f"{c['num_classes']} classes from {c['labels_source']}")),
        ("onnxruntime", esc(f"{c['onnxruntime']} ({', '.join(c['providers'])})" if c["providers"] else c["onnxruntime"])),
        ("device", esc(c["device"])), ("bbx", esc(c["bbx"])),
        ("command", f"<code>{esc(c['command'])}</code>"),
    ]
    details = ("<details><summary>settings of the explanations</summary><code>"
               + esc(json.dumps(settings, separators=(", ", ": "))) + "</code></details>") if settings else ""
    return (f"<section id=card><h2>Model</h2><div class=row><div>{_kv(rows)}{details}</div>"
            f"<div><h3>Inputs and outputs</h3><table><tr><th></th><th>name</th><th>shape</th><th>type</th></tr>{io_rows}"
            f"</table><h3>Preprocessing</h3><table><tr><th>field</th><th>value</th><th>from</th></tr>{pre}</table></div>"
            "</div></section>")


def _dataset(r: Report) -> str:
    total = sum(n for _, n in r.class_counts) or 1
    bars = "".join(f'<tr><td>{esc(name)}</td><td class=num>{n}</td><td><span class=bar style="width:{100 * n / total:.1f}%">'
                   "</span></td></tr>" for name, n in r.class_counts)
    hist = r.plots.get("confidence histogram")
    fig = f'<figure><img src="{src(hist)}" alt="confidence histogram" onerror="bbxBroken(this)">' \
          "<figcaption>top-1 probability of each photo</figcaption></figure>" if hist else ""
    return (f"<section id=dataset><h2>Data set</h2><p>{len(r.gallery)} photos, {len(r.class_counts)} top-1 classes.</p>"
            f"<div class=row><table class=counts><tr><th>top-1 class</th><th>photos</th><th></th></tr>{bars}</table>"
            f"{fig}</div></section>")


def _plots(plots: dict[str, str]) -> str:
    figs = "".join(f'<figure><img src="{src(path)}" alt="{esc(caption)}" onerror="bbxBroken(this)">'
                   f"<figcaption>{esc(caption)}</figcaption></figure>"
                   for caption, path in plots.items() if caption != "confidence histogram")
    return f"<section id=plots><h2>Plots</h2><div class=row>{figs}</div></section>"


def _localisation(head: list[str], rows: list[list[str]], legend: str) -> str:
    heads = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i else ''}>{esc(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return (f"<section id=localisation><h2>Ground-truth localisation</h2><table><tr>{heads}</tr>{body}</table>"
            f"<p>{esc(legend)}</p></section>")


def _num(value: float, fmt: str | None) -> tuple[str, str]:
    """(sort key, shown text); NaN sorts first and shows a dash."""
    if isinstance(value, float) and not math.isfinite(value):
        return "", "—"
    return repr(value), fmt.format(value)


def _gallery(rows: Sequence[Row], many: bool) -> str:
    heads = "".join(f'<th data-col={i + 1} class=sortable>{esc(h)}</th>' for i, (h, _, _) in enumerate(GALLERY_COLUMNS))
    body = []
    for row in rows:
        pics = "".join(f'<a href="{src(row.files[k])}"><img loading=lazy src="{src(row.files[k])}" alt="{k}" '
                       f'title="{k}" onerror="bbxBroken(this)"></a>' for k in ("photo", "overlay", "perturbed"))
        cells = []
        for _, attr, fmt in GALLERY_COLUMNS:
            value = getattr(row, attr)
            key, text = (esc(value), esc(value)) if fmt is None else _num(value, fmt)
            cells.append(f"<td data-v=\"{key}\"{'' if fmt is None else ' class=num'}>{text}</td>")
        fragile = (esc(row.fragile) if row.fragile else "no") if row.fragile_known else "?"
        conv = {True: "ok", False: "warn", None: ""}[row.converged]
        body.append(
            f'<tr id="row-{esc(row.key)}" data-cls="{esc(row.top1_name)}" data-phi="{_num(row.phi, "{}")[0]}" '
            f'data-conf="{row.prob_before!r}" data-fragile="{int(bool(row.fragile))}"><td class=pics>{pics}</td>'
            + "".join(cells) + f'<td class="{conv}">{esc(row.convergence)}</td><td>{fragile}</td></tr>')
    classes = sorted({r.top1_name for r in rows})
    options = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in classes)
    controls = ("<form id=filters onsubmit='return false'><label>class <select id=f-class><option value=''>all</option>"
                f"{options}</select></label> <label>φ ≥ <input id=f-phi type=number step=any size=5></label> "
                "<label>confidence <input id=f-cmin type=number step=0.05 min=0 max=1 size=4> to "
                "<input id=f-cmax type=number step=0.05 min=0 max=1 size=4></label> "
                "<label><input id=f-fragile type=checkbox> fragile only</label> <output id=f-count></output></form>"
                ) if many else ""
    method = esc(rows[0].method) if rows else ""
    return (f"<section id=gallery><h2>Gallery</h2><p>One row per photo ({method}, first seed): the photo as the model "
            "sees it, the undesirable pixels (bright: blurring them raises the top-1 class) and the photo with them "
            "blurred. Click a header to sort. <i>fragile</i>: blurring at most 2% of the pixels (the top of any "
            f"method's heatmap) changes the top-1 class.</p>{controls}<table id=gallery-table><thead><tr><th>pictures</th>"
            f"{heads}<th>convergence</th><th>fragile</th></tr></thead><tbody>{''.join(body)}</tbody></table></section>")


def _classes(groups: Sequence[ClassGroup], images: dict[str, str]) -> str:
    parts = ["<section id=classes><h2>Classes</h2><p>Per top-1 class: the mean undesirable-pixel map over its "
             "photos (fixed 0–1 scale; a border, a watermark or a background cue shows up here), then its photos, "
             "fragile decisions first.</p>"]
    for g in groups:
        thumbs = "".join(
            f'<a href="#row-{esc(r.key)}" class="thumb{" fragile" if r.fragile else ""}" title="{esc(r.name)}">'
            f'<img loading=lazy src="{src(r.files["overlay"])}" alt="{esc(r.name)}" onerror="bbxBroken(this)">'
            f"<span>{esc(r.fragile or r.name)}</span></a>" for r in g.rows)
        mean = images.get(g.name)
        fig = (f'<figure><img loading=lazy src="{src(mean)}" alt="mean undesirable pixels of {esc(g.name)}" '
               f'onerror="bbxBroken(this)"><figcaption>mean of {len(g.rows)}</figcaption></figure>') if mean else ""
        parts.append(f'<div class=cls><h3>{esc(g.name)} <small>{len(g.rows)} photos, {g.fragile} fragile</small></h3>'
                     f"<div class=row>{fig}<div class=thumbs>{thumbs}</div></div></div>")
    return "".join(parts) + "</section>"


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
h1{font-size:20px;margin:0 0 4px}h2{margin:24px 0 8px}main{padding:0 20px 40px}nav a{margin-right:4px}
.summary{margin:2px 0}.warn{color:#a00}.ok{color:#070}td.warn{color:#a60}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #e2e2e2;padding:3px 6px;text-align:left;vertical-align:top}
.kv{max-width:720px}.kv th{width:8em;background:#f3f3f3}h3{margin:6px 0 4px}details{max-width:720px;font-size:12px}code{font-size:12px;word-break:break-all}.num{text-align:right;font-variant-numeric:tabular-nums}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}figure img{max-width:420px;display:block}
figcaption{font-size:12px;color:#555}.bar{display:inline-block;height:10px;background:#4a6fa5;min-width:1px}
.counts td:last-child{width:200px}.pics{white-space:nowrap}.pics img{width:112px;height:112px;object-fit:contain;margin-right:2px;background:#eee}
th.sortable{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:' ▲'}th[aria-sort=descending]::after{content:' ▼'}
#filters{margin:8px 0}#filters input[type=number]{width:5em}.cls{margin:12px 0;padding:8px;background:#fff;border:1px solid #e2e2e2}
.cls figure img{width:160px;height:160px;image-rendering:pixelated}.thumbs{display:flex;flex-wrap:wrap;gap:6px}
.thumb{display:flex;flex-direction:column;width:96px;font-size:11px;color:#333;text-decoration:none;overflow:hidden}
.thumb img{width:96px;height:96px;object-fit:contain}.thumb.fragile{outline:2px solid #c00}img.broken{outline:2px dashed red}
"""

_SCRIPT = """
(function(){
var table=document.getElementById('gallery-table');if(!table)return;var body=table.tBodies[0];
var rows=Array.prototype.slice.call(body.rows);
function val(r,col){var v=r.cells[col].getAttribute('data-v');var n=parseFloat(v);return v!==''&&!isNaN(n)&&isFinite(v)?n:v;}
Array.prototype.forEach.call(table.tHead.querySelectorAll('th.sortable'),function(th){
 th.addEventListener('click',function(){var col=+th.getAttribute('data-col');
  var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
  Array.prototype.forEach.call(table.tHead.querySelectorAll('th'),function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',dir>0?'ascending':'descending');
  rows.sort(function(a,b){var x=val(a,col),y=val(b,col);
   if(typeof x===typeof y)return (x<y?-1:x>y?1:0)*dir;return (typeof x==='number'?1:-1)*dir;});
  rows.forEach(function(r){body.appendChild(r);});});});
var f=function(id){return document.getElementById(id);};if(!f('filters'))return;
function num(id){var v=parseFloat(f(id).value);return isNaN(v)?null:v;}
function apply(){var c=f('f-class').value,p=num('f-phi'),lo=num('f-cmin'),hi=num('f-cmax'),fr=f('f-fragile').checked,shown=0;
 rows.forEach(function(r){var phi=parseFloat(r.getAttribute('data-phi')),conf=parseFloat(r.getAttribute('data-conf'));
  var ok=(!c||r.getAttribute('data-cls')===c)&&(p===null||phi>=p)&&(lo===null||conf>=lo)&&(hi===null||conf<=hi)
   &&(!fr||r.getAttribute('data-fragile')==='1');r.hidden=!ok;if(ok)shown++;});
 f('f-count').textContent=shown+' of '+rows.length+' photos';}
['f-class','f-phi','f-cmin','f-cmax','f-fragile'].forEach(function(id){f(id).addEventListener('input',apply);f(id).addEventListener('change',apply);});
apply();
})();
"""
