"""Figures drawn at build: inline SVG, accessible name from the figure's own labels, ink that follows the theme."""

import matplotlib.pyplot as plt
import pytest

from site_tools.figures import alt_text, open_figures_as_svg, to_svg


def test_svg_has_alt_text_from_titles_and_labels_and_no_hard_black():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], color="black")
    ax.set(title="Loss", xlabel="step", ylabel="loss")
    html = to_svg(fig)
    plt.close(fig)
    assert html.startswith('<figure class="guide-figure"><svg role="img" aria-label="Figure: Loss (x: step, y: loss)"')
    assert "#000000" not in html and "currentColor" in html
    assert "<?xml" not in html and "DOCTYPE" not in html


def test_same_figure_gives_the_same_bytes():
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [3, 1, 2])
        ax.set(title="t", xlabel="x", ylabel="y")
        return fig

    first, second = to_svg(draw()), to_svg(draw())
    plt.close("all")
    assert first == second


def test_a_figure_without_labels_is_refused():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    with pytest.raises(ValueError, match="title or axis labels"):
        alt_text(fig)
    plt.close(fig)


def test_render_prints_every_open_figure_and_closes_them():
    for title in ("a", "b"):
        fig, ax = plt.subplots()
        ax.set_title(title)
    html = open_figures_as_svg()
    assert html.count("<figure") == 2 and plt.get_fignums() == []
    with pytest.raises(RuntimeError, match="no figure is open"):
        open_figures_as_svg()


def test_two_figures_on_one_page_share_no_id():
    import re

    svgs = []
    for title in ("first", "second"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_title(title)
        svgs.append(to_svg(fig))
    plt.close("all")
    ids = [set(re.findall(r'\bid="([^"]+)"', svg)) for svg in svgs]
    assert ids[0] and not ids[0] & ids[1]
    for svg, own in zip(svgs, ids):
        refs = set(re.findall(r"url\(#([^)]+)\)", svg)) | set(re.findall(r'xlink:href="#([^"]+)"', svg))
        assert refs <= own, "every reference points at an id of the same figure"
