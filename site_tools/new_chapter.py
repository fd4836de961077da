"""A new chapter from the template in site_tools/chapter_template/: ``make new-chapter NAME=<name>``.

Writes the chapter's three files (docs/<name>.md, snippets/<name>.py, tests/test_<name>.py), adds the page to the
nav (at the end of a section of it, "Projects" unless ``--section`` names another) and to the chapter list of
mkdocs.yml, and links it from the home page's path. As written, the chapter passes ``make test-chapter
NAME=<name>``; then replace the template's text and code with the chapter's own.
"""

import argparse
import json
import keyword
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).with_name("chapter_template")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def files_of(name):
    return {
        ROOT / "docs" / f"{name}.md": "page.md.template",
        ROOT / "snippets" / f"{name}.py": "module.py.template",
        ROOT / "tests" / f"test_{name}.py": "test.py.template",
    }


def add_to_nav(config, name, title, section):
    """mkdocs.yml's text with the page at the end of the nav section ``section`` and in extra.notebooks.chapters,
    in nav order."""
    lines = config.split("\n")
    try:
        start = lines.index(f"  - {section}:")
    except ValueError:
        sections = re.findall(r"^  - (\w[^:]*):$", config, re.M)
        raise SystemExit(f"no nav section {section!r} in mkdocs.yml (there are: {', '.join(sections)})") from None
    end = start + 1  # the section's lines: blank, comments and entries, indented deeper than the section
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("    ")):
        end += 1
    last_entry = max(i for i in range(start + 1, end) if lines[i].startswith("      - "))
    lines.insert(last_entry + 1, f"      - {json.dumps(title)}: {name}.md")
    config = "\n".join(lines)
    nav_order = re.findall(r"^      - .*: (\w+)\.md$", config, re.M)
    listed = re.search(r"chapters: \[(?P<names>[^\]]*)\]", config)
    chapters = [n.strip() for n in listed["names"].split(",") if n.strip()] + [name]
    ordered = sorted(chapters, key=nav_order.index)
    text, line = "", "chapters: ["
    for number, chapter in enumerate(ordered):
        item = chapter + ("," if number < len(ordered) - 1 else "]")
        if len(line) + len(item) + 1 > 112:
            text += line.rstrip() + "\n               "
            line = ""
        line += item + " "
    return config[: listed.start()] + text + line.rstrip() + config[listed.end() :]


def add_to_home(home, name, title, section):
    """docs/index.md's text with the page at the end of the path's list under **section**."""
    heading = f"**{section}**\n\n"
    if heading not in home:
        raise SystemExit(f"docs/index.md has no **{section}** list in its path")
    start = home.index(heading) + len(heading)
    end = home.find("\n\n", start)
    entry = f"- [{title}]({name}.md): what a reader can do after this chapter, in one line."
    return home[:end] + "\n" + entry + home[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="lowercase letters, digits and underscores: the page, module and test name")
    parser.add_argument("--title", help="the page's title (default: the name, capitalised)")
    parser.add_argument("--section", default="Projects", help="the nav section to add it to (default: Projects)")
    args = parser.parse_args(argv)
    if not NAME.match(args.name) or keyword.iskeyword(args.name):
        raise SystemExit(f"{args.name!r}: a chapter name is lowercase letters, digits and underscores, not a keyword")
    existing = [str(path.relative_to(ROOT)) for path in files_of(args.name) if path.exists()]
    if existing:
        raise SystemExit(f"{args.name}: these files exist already: {', '.join(existing)}")
    title = args.title or args.name.replace("_", " ").capitalize()
    config_path, home_path = ROOT / "mkdocs.yml", ROOT / "docs" / "index.md"
    config = add_to_nav(config_path.read_text(encoding="utf-8"), args.name, title, args.section)
    home = add_to_home(home_path.read_text(encoding="utf-8"), args.name, title, args.section)
    for path, template in files_of(args.name).items():
        text = (TEMPLATES / template).read_text(encoding="utf-8").format(name=args.name, title=title)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    config_path.write_text(config, encoding="utf-8")
    home_path.write_text(home, encoding="utf-8")
    print(f"added {args.name}.md to the nav ({args.section}), the chapter list and the home page's path")
    print(f"next: make test-chapter NAME={args.name}, then write the chapter (CONTRIBUTING.md, 'Add a chapter')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
