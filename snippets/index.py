"""Home page: the versions the site was built with, read from its environment.

What the page runs is in examples(); importing the module runs nothing.
"""


def examples():
    """What the page runs to show something, in page order (a function: importing
    this module prints nothing)."""
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

    return locals()


if __name__ == "__main__":
    examples()
