"""Render matplotlib figures into a page at build time as compact SVG readable in light and dark mode.

A chapter section draws a figure with matplotlib as a reader would; the page then runs the ``render`` section
(hidden) in the same markdown-exec session, which prints every open figure as inline SVG and closes them.
"""

import hashlib
import html
import io
import re

import matplotlib

matplotlib.use("Agg")  # no display at build time
import matplotlib.pyplot as plt  # noqa: E402

# Stable SVG output: same code, same bytes (no random ids, no date).
plt.rcParams.update({"svg.hashsalt": "pytorch-guide", "svg.fonttype": "none"})
DPI = 96  # applied when a figure is saved: a page's figures are drawn before this module is imported

_BLACKS = re.compile(r"#000000|#000(?![0-9a-fA-F])|\bblack\b")


def alt_text(fig):
    """Describe a figure from its own titles and axis labels (used as the SVG's accessible name)."""
    parts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        bits = [ax.get_title()] if ax.get_title() else []
        if ax.get_xlabel() or ax.get_ylabel():
            bits.append(f"x: {ax.get_xlabel() or '-'}, y: {ax.get_ylabel() or '-'}")
        if bits:
            parts.append(" (".join(bits) + (")" if len(bits) > 1 else ""))
    if not parts:
        raise ValueError("a figure on the site needs a title or axis labels: they become its alt text")
    return "Figure: " + "; ".join(parts)


def _prefix_ids(svg, prefix):
    """Make matplotlib's ids (figure_1, axes_1, clip paths) unique within a page that holds several figures."""
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    return re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{prefix}-\1"', svg)


def to_svg(fig):
    """Return the figure as an inline SVG string whose black ink follows the page's text colour."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", dpi=DPI, transparent=True, bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: it is inlined in HTML
    svg = _BLACKS.sub("currentColor", svg)
    svg = _prefix_ids(svg, "fig-" + hashlib.sha1(svg.encode()).hexdigest()[:8])
    label = html.escape(alt_text(fig), quote=True)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="guide-figure" ', 1)
    return f'<figure class="guide-figure">{svg}</figure>'


def open_figures_as_svg():
    """Return every open figure as inline SVG HTML, then close them.

    The page block prints the result itself: markdown-exec captures ``print`` in the block, not in modules.
    """
    numbers = plt.get_fignums()
    if not numbers:
        raise RuntimeError("render was called but no figure is open: the section above drew nothing")
    svgs = [to_svg(plt.figure(number)) for number in numbers]
    plt.close("all")
    return "\n".join(svgs)


if __name__ == "__main__":  # the hidden page block that shows figures (never runs on import)
    # --8<-- [start:render]
    from site_tools.figures import open_figures_as_svg

    print(open_figures_as_svg())
    # --8<-- [end:render]
