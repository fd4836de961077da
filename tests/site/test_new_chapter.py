"""`make new-chapter NAME=<name>` (site_tools/new_chapter.py): in a copy of the repository, the chapter it writes
passes make check (ruff and tests/check), its page runs, and its test passes, as written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def run(command, cwd, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(cwd), "GUIDE_RUN_ID": "new-chapter-test"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_a_new_chapter_passes_the_checks_runs_and_passes_its_test_as_written(tmp_path):
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # a clone, with the work in progress
    files = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    copy = tmp_path / "guide"
    for relative in files.split():
        if (ROOT / relative).is_file():
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, copy / relative)
    python = sys.executable
    out = run([python, "-m", "site_tools.new_chapter", "wave_demo", "--title", "A wave demo"], copy)
    assert "wrote snippets/wave_demo.py" in out and (copy / "snippets" / "wave_demo.py").exists()
    assert not (ROOT / "snippets" / "wave_demo.py").exists()
    assert '- "A wave demo": wave_demo.md' in (copy / "mkdocs.yml").read_text()
    assert "[A wave demo](wave_demo.md)" in (copy / "docs" / "index.md").read_text()
    ruff = str(Path(python).with_name("ruff"))
    run([ruff, "check", "."], copy)
    run([ruff, "format", "--check", "."], copy)
    run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/check"], copy)
    assert "wave_demo: ran" in run([python, "-m", "site_tools.execution", "wave_demo"], copy)
    assert "4 passed" in run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_wave_demo.py"], copy)


def test_the_generator_refuses_a_bad_name_and_an_existing_chapter():
    for name, message in [("Bad-Name", "lowercase letters"), ("class", "not a keyword"), ("tensors", "exist already")]:
        result = subprocess.run(
            [sys.executable, "-m", "site_tools.new_chapter", name], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode != 0 and message in result.stderr, result.stderr
