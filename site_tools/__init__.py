"""The site's machinery, not reader code: recorded runs, build-time figures, notebooks, and the checks of the built
HTML that both site generators' outputs go through. Nothing on a page imports it in code a reader sees."""
