"""Install and verify: the code of docs/install.md.

The page checks the installation (versions, a tiny computation on the usable
device), shows why ``torch.accelerator.current_accelerator()`` alone is no test
for a usable GPU, and ends with an exercise that picks the device. What the page
runs is at the end, at module level; importing the module runs nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.install` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:verify]
    import platform

    import torch

    print("Python:             ", platform.python_version())
    print("torch:              ", torch.__version__)
    # None for a build without CUDA (CPU-only, macOS)
    print("built with CUDA:    ", torch.version.cuda)
    # the accelerator this machine can use now, or None
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    print("usable accelerator: ", accelerator)
    device = accelerator if accelerator is not None else torch.device("cpu")
    print("computing on:       ", device)
    check = torch.ones(2, 3, device=device) @ torch.ones(3, 2, device=device)
    print("(2×3 ones) @ (3×2 ones) =", check.tolist())
    # --8<-- [end:verify]

    # --8<-- [start:accelerator-trap]
    import torch

    # what this build of torch was compiled for
    compiled_for = torch.accelerator.current_accelerator()
    # ... and is also usable on this machine right now
    usable = torch.accelerator.current_accelerator(check_available=True)
    available = torch.accelerator.is_available()
    count = torch.accelerator.device_count()
    print("current_accelerator():                    ", compiled_for)
    print("current_accelerator(check_available=True):", usable)
    print("is_available():                           ", available)
    print("device_count():                           ", count)
    # A build for an accelerator this machine lacks: using it fails.
    if compiled_for is not None and usable is None:
        try:
            torch.ones(1, device=compiled_for)
        except RuntimeError as error:
            first_sentence = str(error).split(".")[0]
            print(f"torch.ones(1, device={compiled_for.type!r}) raises:")
            print(f"  RuntimeError: {first_sentence}")
    # --8<-- [end:accelerator-trap]

    # --8<-- [start:exercise-pick-device]
    import torch

    def pick_device():
        """The usable accelerator (CUDA, MPS, XPU, ...) if any, else the CPU."""
        usable = torch.accelerator.current_accelerator(check_available=True)
        return usable if usable is not None else torch.device("cpu")

    picked = pick_device()
    model = torch.nn.Linear(4, 2).to(picked)
    print("picked:", picked)
    print("model parameters on:", next(model.parameters()).device)
    # --8<-- [end:exercise-pick-device]
