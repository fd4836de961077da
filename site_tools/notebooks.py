"""Every chapter as a runnable Jupyter notebook, generated from its page.

A chapter (a page in the nav with its module ``snippets/<name>.py``) becomes ``docs/notebooks/<name>.ipynb``: prose as
Markdown cells, every executed snippet include as a code cell, in page order. jupytext splits the page into cells,
pymdownx.snippets (configured exactly as in mkdocs.yml) expands the includes, and the small steps here handle what
only this site has:

- Material blocks (admonitions, ``??? success "Solution"``, content tabs) become a bold title and a blockquote; the
  code fences inside them become top-level code cells, so a solution follows its exercise.
- Hidden fences (executed, without ``source=``) are the site's, not the reader's: the figure renderer is dropped
  (the notebook shows figures itself, ``%matplotlib inline``) and a block that shows a recorded run's results
  becomes a note linking the page, where those results are. No cell imports this repository's code.
- A section the page shows but does not run (a plain ``python`` fence after a ``pytest.mark.skip`` marker: a full
  training run, a GPU benchmark) stays a code cell for the reader, tagged ``skip-execution`` so that nbclient skips
  it, as the site build does. Jupyter's and Colab's "Run all" run it all the same, so it must work in a notebook
  (after the cells above it, with a network: it may download MNIST, take minutes, use a GPU if there is one).
  A block that cannot (part of a function of another program, a script for a launcher such as ``torchrun``, code
  that needs a CUDA GPU) carries ``<!--notebook:listing-->`` before its skip marker: the notebook shows it as a
  listing, a Markdown cell, never run.
- Shell fences stay Markdown (commands for a terminal, not cells); links to pages point at the published site.
- A first code cell sets the runtime up (figures inline).

``python -m site_tools.notebooks`` (``make notebooks``, which every build runs first) writes them into
``docs/notebooks/``, which git ignores: both site generators publish that folder as it is, and the site workflow
(.github/workflows/site.yml) also publishes them to the branch Colab opens them from. The page template
(overrides/main.html) links each chapter to both from ``extra.notebooks`` in mkdocs.yml. Nothing generated is
committed, so a prose edit is a one-file change; tests/check/test_notebooks_match_pages.py checks that each notebook
holds exactly the blocks its page runs.
"""

import argparse
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = "docs/notebooks"  # in the repository; "notebooks/" in the built site
SKIP_TAG = "skip-execution"  # nbclient skips cells with this tag; Jupyter and Colab run them

_BLOCK = re.compile(r'^(?P<indent> *)(?P<kind>!!!|\?\?\?\+?|===)\s+(?P<type>[\w-]*)\s*(?:"(?P<title>[^"]*)")?')
_FENCE_OPEN = re.compile(r"^ *(`{3,}|~{3,})")
_SKIP_MARK = re.compile(r"\n?<!--\s*pytest\.mark\.skip(?:if)?\((?P<args>.*)\)\s*-->\s*$")
_LISTING_MARK = re.compile(r"\n?<!--\s*notebook:listing\s*-->\s*$")  # before a skip marker
_COMMENT = re.compile(r"^<!--\s*(?:pytest[\w.-]*(?::[\w-]+)?(?:\(.*\))?|notebook:[\w-]+)\s*-->\n?", re.M)
_REASON = re.compile(r"""reason\s*=\s*(["'])(?P<reason>.*?)\1""")
_TRAILING_COMMENT = re.compile(r"\n*((?:<!--[^\n]*-->\n?)+)\s*$")
_INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<target>[^"]+)"\s*$')
_SHELL_MAGIC = re.compile(r"^%%(?P<lang>bash|sh|zsh)\n")
_LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\(|^\[[^\]]+\]:\s*)(?P<target>[^)\s]+)", re.M)
_ATTR_LIST = re.compile(r"\s*\{\s*[#.:][^}]*\}\s*$", re.M)
FIGURE_RENDER = "site_tools/figures.py:render"


def flatten_blocks(text):
    """Rewrite Material blocks as a bold title and a blockquote, and every code fence at the top level.

    Notebook cells cannot nest: a fence inside an admonition, a solution or a list item becomes a top-level fence
    (a cell), followed by the rest of its block, dedented likewise.
    """
    return _hoist_fences(_flatten(text))


def _flatten(text):
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        fence = _FENCE_OPEN.match(lines[i])
        if fence:  # a fence body is never a block
            end = _fence_end(lines, i, fence[1])
            out.extend(lines[i : end + 1])
            i = end + 1
            continue
        match = _BLOCK.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body_indent, j = match["indent"], match["indent"] + "    ", i + 1
        while j < len(lines) and (lines[j].startswith(body_indent) or not lines[j].strip()):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # trailing blank lines are not the block's
            j -= 1
        body = _flatten("\n".join(line[len(body_indent) :] for line in lines[i + 1 : j]))
        title = match["title"] if match["title"] is not None else match["type"].replace("-", " ").capitalize()
        out.extend(indent + line if line else line for line in _quote(title, body).split("\n"))
        i = j
    return "\n".join(out)


def _hoist_fences(text):
    """Dedent every indented fence, and the lines after it at the same depth, to the top level."""
    lines = text.split("\n")
    out, i, depth = [], 0, 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        if line.strip() and indent < depth:
            depth = 0
        fence = _FENCE_OPEN.match(line)
        if fence:
            depth = indent
            end = _fence_end(lines, i, fence[1])
            # every line loses the fence's indent (one indented less, all of its own): the code keeps its own
            out.extend(
                body[depth:] if body[:depth].strip(" ") == "" else body.lstrip(" ") for body in lines[i : end + 1]
            )
            i = end + 1
            continue
        out.append(line[depth:] if depth else line)
        i += 1
    return "\n".join(out)


def _fence_end(lines, start, ticks):
    return next((j for j in range(start + 1, len(lines)) if lines[j].strip() == ticks), len(lines) - 1)


def _quote(title, body):
    """A bold title and the body as a blockquote, except its code fences (a cell cannot live in a quote)."""
    segments, prose, lines, i = [], [], body.split("\n"), 0
    while i < len(lines):
        fence = _FENCE_OPEN.match(lines[i])
        if fence:
            end = _fence_end(lines, i, fence[1])
            segments += [("prose", prose), ("code", lines[i : end + 1])]
            prose, i = [], end + 1
        else:
            prose.append(lines[i])
            i += 1
    segments.append(("prose", prose))
    parts = []
    for kind, seg in segments:
        if kind == "code":
            parts.append("\n".join(seg))
            continue
        text = "\n".join(seg).strip("\n")
        marker = _TRAILING_COMMENT.search(text)  # markers for the fence below stay outside the quote
        text, marker = (text[: marker.start()], marker[1].strip("\n")) if marker else (text, "")
        if title and not parts:
            text = f"**{title}**" + (f"\n\n{text}" if text else "")
        if text:
            parts.append("\n".join(f"> {line}" if line.strip() else ">" for line in text.split("\n")))
        if marker:
            parts.append(marker)
    return "\n\n".join(parts)


def page_url(src_uri, use_directory_urls=True):
    """The URL of a page relative to the site root, as MkDocs builds it ('autograd.md' -> 'autograd/')."""
    stem = src_uri[:-3]
    if not use_directory_urls:
        return stem + ".html"
    if stem == "index" or stem.endswith("/index"):
        return stem[:-5]
    return stem + "/"


@dataclass
class Converter:
    """Turns one page into a notebook; everything it needs comes from mkdocs.yml (see ``from_config``)."""

    snippets: dict  # the pymdownx.snippets options of mkdocs.yml
    site_url: str = ""  # links to other pages point there; left relative when empty
    use_directory_urls: bool = True
    _preprocessor: object = field(default=None, init=False, repr=False)

    @classmethod
    def from_config(cls, config):
        snippets = dict(config["mdx_configs"].get("pymdownx.snippets", {}))
        # base_path is relative to the folder the site is built from: the repository root
        snippets["base_path"] = [os.fspath(ROOT / path) for path in snippets.get("base_path", ["."])]
        return cls(
            snippets=snippets,
            site_url=config.get("site_url") or "",
            use_directory_urls=config.get("use_directory_urls", True),
        )

    def expand(self, source):
        """Replace ``--8<--`` include lines with the sections they name, exactly as the site build does."""
        if self._preprocessor is None:
            import markdown

            options = {**self.snippets, "base_path": [os.fspath(p) for p in self.snippets.get("base_path", ["."])]}
            md = markdown.Markdown(extensions=["pymdownx.snippets"], extension_configs={"pymdownx.snippets": options})
            self._preprocessor = md.preprocessors["snippet"]
        return "\n".join(self._preprocessor.run(source.split("\n"))).strip("\n")

    def absolute_links(self, text, src_uri):
        """Point relative links at the published site: a notebook has no neighbouring pages."""
        if not self.site_url:
            return text
        base = self.site_url.rstrip("/") + "/"

        def rewrite(match):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:|^/", target, re.I):
                return match[0]
            path, _, anchor = target.partition("#")
            path = posixpath.normpath(posixpath.join(posixpath.dirname(src_uri), path)) if path else src_uri
            url = page_url(path, self.use_directory_urls) if path.endswith(".md") else path
            return match["head"] + base + url + (f"#{anchor}" if anchor else "")

        return _LINK.sub(rewrite, text)

    def setup_cell(self):
        """The first code cell: figures appear below the cells that draw them."""
        return "# Run this cell first: figures then appear below the cells that draw them.\n%matplotlib inline"

    def notebook(self, src_uri, text):
        """The notebook of the page ``src_uri`` (relative to docs/) whose Markdown is ``text``."""
        import jupytext
        import nbformat

        text = _ATTR_LIST.sub("", flatten_blocks(text))
        title_match = re.search(r"^# (.+)$", text, re.M)
        title = title_match[1].strip() if title_match else Path(src_uri).stem
        if title_match:
            text = text[: title_match.start()] + text[title_match.end() :]
        # The header makes Python the notebook's language whatever the first fence is (else: %%python cells).
        header = (
            "---\njupyter:\n  kernelspec:\n    display_name: Python 3\n    name: python3\n    language: python\n---\n\n"
        )
        parsed = jupytext.reads(header + text, fmt="md")

        cells, skip_reason, listing = [], None, False
        for cell in parsed.cells:
            source = cell.source
            if cell.cell_type == "markdown":
                mark = _SKIP_MARK.search(source)
                if mark:  # the marker belongs to the fence below it
                    reason = _REASON.search(mark["args"])
                    skip_reason = reason["reason"] if reason else "not run when the site is built"
                    source = source[: mark.start()]
                    listing_mark = _LISTING_MARK.search(source)
                    if listing_mark:
                        listing, source = True, source[: listing_mark.start()]
                if _LISTING_MARK.search(source) or "notebook:" in "".join(_COMMENT.findall(source)):
                    raise ValueError(f"{src_uri}: <!--notebook:listing--> belongs right before a skip marker")
                source = _COMMENT.sub("", source).strip()
                if source:
                    cells.append(nbformat.v4.new_markdown_cell(self.absolute_links(source, src_uri)))
                continue
            shell = _SHELL_MAGIC.match(source)
            if shell:  # a command for a terminal: shown, not run
                cells.append(nbformat.v4.new_markdown_cell(f"```{shell['lang']}\n{source[shell.end() :]}\n```"))
                skip_reason, listing = None, False
                continue
            includes = [_INCLUDE.match(line) for line in source.split("\n") if line.strip()]
            if cell.metadata.get("exec") == "on" and "source" not in cell.metadata:  # hidden on the page
                if not any(inc and inc["target"] == FIGURE_RENDER for inc in includes):
                    link = self.absolute_links(f"[the page]({src_uri})", src_uri)
                    cells.append(nbformat.v4.new_markdown_cell(f"*Here {link} shows results from its recorded run.*"))
                continue
            if includes and all(includes):
                source = self.expand(source)
            if listing:  # shown, never run: a Markdown cell
                cells.append(nbformat.v4.new_markdown_cell(f"```python\n{source}\n```"))
                skip_reason, listing = None, False
                continue
            tags = []
            if skip_reason is not None:
                source = f"# The site's build skips this cell: {skip_reason}\n{source}"
                tags = [SKIP_TAG]
                skip_reason = None
            cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))

        merged = []  # adjacent Markdown (prose and a shell fence after it) reads best as one cell
        for cell in cells:
            if merged and cell.cell_type == merged[-1].cell_type == "markdown":
                merged[-1].source += "\n\n" + cell.source
            else:
                merged.append(cell)
        url = self.site_url.rstrip("/") + "/" + page_url(src_uri, self.use_directory_urls) if self.site_url else ""
        about = f"[{title}]({url})" if url else title
        intro = (
            f"# {title}\n\n"
            f"The runnable version of the PyTorch Guide chapter {about}: every code cell is a section the site "
            "runs and tests. Run the cells in order, starting with the setup cell below."
        )
        cells = [nbformat.v4.new_markdown_cell(intro), nbformat.v4.new_code_cell(self.setup_cell()), *merged]
        for number, cell in enumerate(cells):
            cell.id = f"cell-{number}"  # stable ids: the same page always gives the same bytes
        nb = nbformat.v4.new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
        )
        nbformat.validate(nb)
        return nb


def chapter_pages(config):
    """The chapters in nav order: pages with a module ``snippets/<name>.py`` and a "What you will learn" section."""

    def walk(entries):
        for entry in entries or []:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            if isinstance(value, list):
                yield from walk(value)
            elif isinstance(value, str) and value.endswith(".md"):
                yield value

    docs = Path(config["docs_dir"])
    return [
        page
        for page in walk(config["nav"])
        if (ROOT / "snippets" / f"{Path(page).stem}.py").is_file()
        and re.search(r"^## What you will learn", (docs / page).read_text(encoding="utf-8"), re.M)
    ]


def notebook_name(src_uri):
    return f"{Path(src_uri).stem}.ipynb"


def generate(config):
    """{notebook file name: notebook JSON} for every chapter of the site configured by ``config``."""
    import nbformat

    converter = Converter.from_config(config)
    docs = Path(config["docs_dir"])
    return {
        notebook_name(page): nbformat.writes(converter.notebook(page, (docs / page).read_text(encoding="utf-8"))) + "\n"
        for page in chapter_pages(config)
    }


def load_site_config(path=ROOT / "mkdocs.yml"):
    from mkdocs.config import load_config

    return load_config(str(path))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / NOTEBOOKS_DIR), help="folder to write the notebooks to")
    args = parser.parse_args(argv)
    notebooks = generate(load_site_config())
    out = Path(args.out)
    from site_tools.records import atomic_write_text

    for name, text in notebooks.items():
        atomic_write_text(out / name, text)
    for orphan in set(p.name for p in out.glob("*.ipynb")) - set(notebooks):
        (out / orphan).unlink()
    print(f"wrote {len(notebooks)} notebooks to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
