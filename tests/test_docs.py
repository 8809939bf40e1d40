"""The documentation a newcomer reads first: a README that starts them in one screen, links that lead somewhere,
and no file citing a document the repository does not hold."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCREEN = 50           # lines of a first screenful
MAX_README_LINES = 170
# *.md files our commands and benchmark scripts write (not documents): evaluate's dice.md, the benchmarks' tables
WRITTEN_BY_US = {"dice.md", "summary.md", "table.md"}
MD_NAME = re.compile(r"[\w./-]*\w\.md\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked(*suffixes: str) -> list[Path]:
    """The repository's own files (git's list where there is one, else a walk that skips hidden and build folders)."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / line for line in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        skip = {"demo_out", "build", "dist", "runs"}
        files = [p for p in ROOT.rglob("*")
                 if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)]
    return sorted(p for p in files if p.suffix in suffixes and p.is_file())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_readme_starts_a_newcomer_in_one_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    first = "\n".join(lines[:SCREEN])
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    for needed in ("make demo", "make test", ci, "| test set"):
        assert needed in first, f"{needed!r} is not in README.md's first {SCREEN} lines"


def test_links_in_the_docs_lead_somewhere():
    broken = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_no_file_cites_a_document_the_repository_lacks():
    missing = []
    for f in tracked(".md", ".py"):
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for name in MD_NAME.findall(line):
                if Path(name).name in WRITTEN_BY_US:
                    continue
                if not ((f.parent / name).exists() or (ROOT / name).exists()):
                    missing.append(f"{f.relative_to(ROOT)}:{n}: {name}")
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(missing)
