"""Home page: the versions the site was built with, read from its environment.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.index` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:versions]
    import datetime
    import platform

    import torch
    import torchvision

    print(f"Python       {platform.python_version()}")
    print(f"torch        {torch.__version__}")
    print(f"torchvision  {torchvision.__version__}")
    today = datetime.datetime.now(datetime.timezone.utc)
    print(f"built on     {today:%Y-%m-%d} (UTC)")
    # --8<-- [end:versions]
