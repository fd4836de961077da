"""The checks of tests/site/test_browser.py on the Zensical build: a file of its own, so that `make test`'s two
xdist workers (`--dist loadfile`) check both builds in Chromium at the same time."""

import pytest
from test_browser import *  # noqa: F403  (the same tests and fixtures)


@pytest.fixture(scope="session", params=["zensical"])
def builder(request):
    return request.param
