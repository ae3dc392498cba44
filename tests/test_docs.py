"""README.md and docs/: every --flag they name exists, every link resolves, every page is linked."""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
# flags of other tools that the pages show in their commands
OTHERS = {"--standalone", "--nproc_per_node", "--nnodes", "--array", "--durations", "--no-deps", "--index-url",
          "--upgrade", "--only-binary", "--platform", "--python-version", "--implementation", "--help", "--cpus-per-task",
          "--gres", "--time", "--job-name", "--output", "--mem", "--ntasks", "--partition", "--nodes", "--target",
          "--no-index", "--extra-index-url", "--pre", "--node_rank", "--master_addr", "--master_port", "--rdzv-backend",
          "--ntasks-per-node", "--gpus-per-node", "--exclusive", "--dependency", "--requirement", "--force-reinstall",
          "--profile", "--user", "--break-system-packages", "--quiet", "--cache-dir"}


def help_flags(script):
    out = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))


def bench_flags():
    return {f for path in glob.glob(os.path.join(ROOT, "bench", "*.py"))
            for f in re.findall(r'add_argument\("(--[a-z][a-z0-9-]*)"', open(path).read())}


def test_every_flag_named_in_the_pages_exists():
    known = help_flags("regmix.py") | help_flags("prepare.py") | bench_flags() | OTHERS
    assert "--ladder-runs" in known and "--cluster" in known  # the help was read
    unknown = {}
    for page in PAGES:
        for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", open(page, encoding="utf-8").read())):
            if flag not in known:
                unknown.setdefault(flag, []).append(os.path.relpath(page, ROOT))
    assert not unknown, unknown


def test_every_link_resolves_and_every_page_is_linked():
    readme = open(PAGES[0], encoding="utf-8").read()
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", open(page, encoding="utf-8").read()):
            if target.startswith(("http://", "https://", "#")):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
            assert os.path.exists(path), (os.path.relpath(page, ROOT), target)
    for page in PAGES[1:]:
        assert f"](docs/{os.path.basename(page)})" in readme, page


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = open(PAGES[0], encoding="utf-8").read().splitlines()
    assert len(lines) <= 300
    assert lines[3] == "pip install -r requirements.txt && python prepare.py && python regmix.py --stage all --model tiny"
    assert lines[4] == "pip install -r requirements-dev.txt && python -m pytest -q tests"
    assert "python -m pytest -q tests" in open(os.path.join(ROOT, ".ci", "run")).read()


def paper_path():
    """{(file, name): lines} of every function `file.py: name` that docs/reading.md names before its
    "Beyond the paper" section (Class.method for a method)."""
    import ast
    text = open(os.path.join(ROOT, "docs", "reading.md"), encoding="utf-8").read().split("## Beyond the paper")[0]
    found = {}
    for path, name in re.findall(r"`(\w+\.py): ([\w.]+)`", text):
        node = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        for part in name.split("."):
            node = next((n for n in ast.iter_child_nodes(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                         and n.name == part), None)
            assert node is not None, f"docs/reading.md names {path}: {name}, which does not exist"
        found[path, name] = node.end_lineno - node.lineno + 1
    return found


def test_the_papers_path_is_short_enough_to_read_in_one_sitting():
    lines = paper_path()
    assert ("search.py", "simulate") in lines and ("regression.py", "stage_fit") in lines  # the page was parsed
    assert sum(lines.values()) <= 700, sum(lines.values())
    assert max(lines.values()) <= 80, max(lines.items(), key=lambda kv: kv[1])
    assert lines["search.py", "simulate"] <= 40 and lines["regression.py", "stage_fit"] <= 40
