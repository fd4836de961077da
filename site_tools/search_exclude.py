"""Keep code out of the site's search index (a Markdown extension, in mkdocs.yml).

Code blocks and their printed outputs were three fifths of the index, which every page view downloads (about 1.1 MB
for 23 pages): every ``<pre>`` gets ``data-search-exclude``, which Material for MkDocs and Zensical both honour. The
prose around the code, API names included, stays searchable."""

import re

from markdown import Extension
from markdown.postprocessors import Postprocessor

_PRE = re.compile(r"<pre(?=[\s>])(?![^>]*data-search-exclude)")


class _ExcludePre(Postprocessor):
    def run(self, text):
        return _PRE.sub("<pre data-search-exclude", text)


class SearchExclude(Extension):
    def extendMarkdown(self, md):  # noqa: N802 (Python-Markdown's name)
        # priority 1: after raw HTML (markdown-exec's blocks among it) is put back, at 30
        md.postprocessors.register(_ExcludePre(md), "search_exclude_code", 1)


def makeExtension(**kwargs):  # noqa: N802 (Python-Markdown's name)
    return SearchExclude(**kwargs)
