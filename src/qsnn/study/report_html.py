"""``report.html``: the markdown report as one self-contained file to share (mail, chat, CI
artifact). markdown-it-py renders the markdown (GFM tables on); every local image is inlined as a
base64 ``data:`` URI, so the file opens anywhere without the PNGs next to it.
"""
from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3}tr:nth-child(even){background:#fafafa}img{max-width:100%;display:block;margin:1em 0}
code{background:#f3f3f3;padding:0 3px}"""


def inline_images(body: str, base: Path) -> str:
    """Replace ``src="name.png"`` of files under ``base`` by data URIs (others are left as they are)."""
    def repl(m: re.Match) -> str:
        path = base / html.unescape(m.group(2))
        if "://" in m.group(2) or not path.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f'{m.group(1)}"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return re.sub(r'(<img[^>]*?\bsrc=)"([^"]+)"', repl, body)


def write_html(md: str, path: str | Path, title: str = "Sweep report") -> Path:
    from markdown_it import MarkdownIt

    path = Path(path)
    body = inline_images(MarkdownIt("commonmark").enable("table").render(md), path.parent)
    path.write_text(f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
                    f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n")
    return path
