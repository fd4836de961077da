"""docs/install.md: the verify snippet, the current_accelerator() trap, and the page's shell blocks."""

import ast
import re
import sys
from importlib import metadata

import pytest
import torch
from conftest import (  # noqa: F401 (a test)
    DOCS,
    ROOT,
    distribution_name,
    installed_by,
    test_the_page_prints_what_its_build_shows,
    with_requirements,
)

PAGE = (DOCS / "install.md").read_text(encoding="utf-8")


def test_verify_prints_the_installed_versions(printed):
    assert f"torch:               {torch.__version__}\n" in printed
    assert f"built with CUDA:     {torch.version.cuda}\n" in printed


def test_verify_falls_back_to_the_cpu_exactly_when_no_accelerator_is_usable(page):
    if torch.accelerator.is_available():
        assert page.device == torch.accelerator.current_accelerator()
    else:
        assert page.accelerator is None
        assert page.device == torch.device("cpu")
    assert page.check.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert page.check.device.type == page.device.type


def test_check_available_agrees_with_is_available(page):
    assert (page.usable is not None) == torch.accelerator.is_available()
    if page.usable is not None:
        assert page.usable == page.compiled_for


@pytest.mark.skipif(
    torch.version.cuda is None or torch.accelerator.is_available(),
    reason="the trap shows only with a CUDA build on a machine without a usable GPU",
)
def test_the_trap_current_accelerator_says_cuda_without_a_gpu(page, printed):
    assert page.compiled_for == torch.device("cuda")
    assert page.usable is None
    assert "raises:\n  RuntimeError: Found no NVIDIA driver on your system\n" in printed


def test_pick_device_solution_puts_the_model_on_the_picked_device(page):
    picked = page.pick_device()
    expected = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")
    assert picked == expected
    assert next(page.model.parameters()).device.type == picked.type


def shell_blocks():
    """(line before, code) of every bash fence on the page, tabs included."""
    pattern = re.compile(r"(?P<before>[^\n]*)\n *```bash\n(?P<code>.*?)\n *```", re.S)
    return [(m["before"].strip(), m["code"]) for m in pattern.finditer(PAGE)]


def test_every_install_command_is_skipped_with_a_reason_and_the_version_check_runs():
    blocks = shell_blocks()
    assert len(blocks) >= 4
    for before, code in blocks:
        installs = re.search(r"\b(pip|conda) (install|create)\b", code)
        skipped = re.fullmatch(r'<!--pytest\.mark\.skip\(reason=".{10,}"\)-->', before)
        assert bool(installs) == bool(skipped), code
    assert any(
        "import torch; print(torch.__version__)" in code and not before.startswith("<!--") for before, code in blocks
    )


def test_conda_instructions_use_conda_forge_not_the_retired_pytorch_channel():
    conda_commands = [code for _, code in shell_blocks() if "conda " in code]
    assert conda_commands and all("-c conda-forge" in code for code in conda_commands)
    assert not any("-c pytorch" in code for code in conda_commands)
    assert '=== "pip"' in PAGE and '=== "conda"' in PAGE


def test_the_install_commands_install_every_package_the_pages_code_imports():
    """A notebook run in a fresh environment with the install page's packages finds every import (fastapi and
    uvicorn were once missing): the snippets' imports, as distributions, against what the pip and conda commands
    name and what those pull in."""
    local = {"snippets", "benchmarks", "site_tools", "conftest"}
    modules = set()
    for path in (ROOT / "snippets").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | local
    owners = metadata.packages_distributions()
    needed = {distribution_name(owners[module][0]) for module in modules}
    assert {"torch", "fastapi", "uvicorn"} <= needed

    blocks = "\n".join(code for _, code in shell_blocks())
    pip = installed_by(blocks, "pip")
    conda = {"torch" if name == "pytorch" else name for name in installed_by(blocks, "conda")}
    for tool, names in (("pip", pip), ("conda", conda)):
        missing = sorted(needed - with_requirements(names))
        assert not missing, f"imported by the pages' code, not installed by the {tool} commands: {missing}"
