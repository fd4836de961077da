"""A small page using every construct the chapters use, for the notebook tests (tests/check and tests/site)."""

import textwrap

import site_tools.notebooks as notebooks


def write_fixture(tmp_path):
    """A small page using every construct the chapters use, and its snippet module."""
    (tmp_path / "snippets").mkdir()
    marker = "# --8<-- "  # split so no scanner mistakes this test for a snippet module
    (tmp_path / "snippets" / "demo.py").write_text(
        textwrap.dedent(f"""\
        {marker}[start:first]
        import sys

        value = 41
        print("kernel", sys.executable)
        {marker}[end:first]

        {marker}[start:plot]
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [value, value + 1])
        ax.set(title="a line", xlabel="x", ylabel="y")
        {marker}[end:plot]

        {marker}[start:long]
        raise RuntimeError("a long run must not run in the test")
        {marker}[end:long]

        {marker}[start:solution]
        print("answer", value + 1)
        {marker}[end:solution]

        {marker}[start:launched]
        print("rank", rank)
        {marker}[end:launched]
        """)
    )
    inc = "--8<--"
    page = textwrap.dedent(f"""\
        # Demo

        Read [the tensors chapter](tensors.md#views) and [this part](#exercises).

        ```python exec="on" source="above" result="text" session="demo"
        {inc} "snippets/demo.py:first"
        ```

        !!! warning "Misconception: lines are curves"
            They are straight.

            ```python exec="on" source="above" session="demo"
            {inc} "snippets/demo.py:plot"
            ```

        ```python exec="on" html="1" session="demo"
        {inc} "site_tools/figures.py:render"
        ```

        ```python exec="on" html="1" session="demo"
        {inc} "snippets/demo_report.py:recorded"
        ```

        === "pip"

            ```bash
            pip install torch
            ```

        <!--pytest.mark.skip(reason="ten minutes on a CPU")-->
        ```python
        {inc} "snippets/demo.py:long"
        ```

        Part of a script that a launcher starts:

        <!--notebook:listing-->
        <!--pytest.mark.skip(reason="needs torchrun")-->
        ```python
        {inc} "snippets/demo.py:launched"
        ```

        ## Exercises

        1. What is `value + 1`?

            ??? success "Solution"
                Add one.

                ```python exec="on" source="above" result="text" session="demo"
                {inc} "snippets/demo.py:solution"
                ```

                So it is 42.
        """)
    return page


def fixture_converter(tmp_path, **kwargs):
    options = {"base_path": [str(tmp_path)], "check_paths": True, "dedent_subsections": True}
    return notebooks.Converter(snippets=options, site_url="https://example.org/guide/", **kwargs)
