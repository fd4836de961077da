"""PyTorch Guide: the code of every chapter, one module per chapter.

Each module is cut into named sections that pages include with pymdownx.snippets
(``--8<-- "snippets/<chapter>.py:<section>"``); site_tools/execution.py runs each
page's sections once, the site shows that run, and ``tests/test_<chapter>.py``
asserts what the page claims.
"""
