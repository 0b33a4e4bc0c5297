"""The README stays short and its links into docs/ resolve (pure file reading, no imports of qsnn).

- README.md has at most 300 lines;
- every relative markdown link ``[text](path)`` / ``[text](path#anchor)`` in README.md, docs/*.md
  and sweeps/README.md points to an existing file, and an anchor to a heading of that file
  (GitHub's slugs: lowercase, punctuation dropped except '-' and '_', spaces to '-', '-1', '-2'
  for repeated headings);
- every docs/*.md is linked from README.md and opens with a title and a summary paragraph.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "sweeps" / "README.md"]
MAX_README_LINES = 300

LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines markdown renders as prose: fenced and indented code blocks left out."""
    out, fenced, prev_blank, in_indented = [], False, True, False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            prev_blank = False
            continue
        if fenced:
            continue
        blank = not line.strip()
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and (prev_blank or in_indented):
            in_indented = True      # an indented code block (starts after a blank line)
        elif not blank:
            in_indented = False
        if not in_indented:
            out.append(line)
        prev_blank = blank
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = LINK.sub(r"\1", heading)             # a link in a heading counts by its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)        # drop punctuation (backticks, ':', '&', ...)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link; inline code spans are not links."""
    found = []
    text = path.read_text(encoding="utf-8")
    kept = set(prose_lines(text))
    for i, line in enumerate(text.splitlines(), 1):
        if line not in kept:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for m in LINK.finditer(line):
            target = m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
                continue
            found.append((i, target))
    return found


def resolve(page: Path, target: str) -> tuple[Path, str | None]:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    return file, (anchor or None)


def test_slug_follows_github():
    assert slug("Weights & Biases problems") == "weights--biases-problems"
    assert slug("Stacked seeds: `launcher=stacked`") == "stacked-seeds-launcherstacked"
    assert slug("The papers' methods") == "the-papers-methods"
    assert slug("Cost metrics (NeuroBench definitions)") == "cost-metrics-neurobench-definitions"
    assert slug("W&B sweeps") == "wb-sweeps"
    assert slug("make_bench and more") == "make_bench-and-more"


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move a topic into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    broken = []
    for line, target in links(page):
        file, anchor = resolve(page, target)
        if not file.exists():
            broken.append(f"{page.name}:{line}: {target}: no file {file}")
        elif anchor is not None:
            if file.suffix != ".md":
                broken.append(f"{page.name}:{line}: {target}: anchor into a non-markdown file")
            elif anchor not in anchors(file):
                broken.append(f"{page.name}:{line}: {target}: no heading '#{anchor}' in {file.name} "
                              f"(has: {', '.join(sorted(anchors(file)))})")
    assert not broken, "\n".join(broken)


def test_every_doc_is_linked_from_readme():
    assert DOCS, "docs/ holds no .md file"
    linked = {resolve(README, t)[0] for _, t in links(README)}
    missing = [d.name for d in DOCS if d.resolve() not in linked]
    assert not missing, f"docs not linked from README.md: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_opens_with_title_and_summary(doc):
    blocks = [b.strip() for b in doc.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert blocks and re.match(r"^# \S", blocks[0]) and "\n" not in blocks[0], \
        f"{doc.name}: the first line is the page's '# title'"
    assert len(blocks) > 1 and not blocks[1].startswith(("#", "    ", "|", "```", "-")), \
        f"{doc.name}: a one-paragraph summary follows the title"
