"""Shipped text cites only what a user has: docs/methods.md (by section) or a paper by name.

"Shipped" = everything a clone or an installed package gives a user: the packages (``wsss/``,
``wsss_cli/``, the top-level ``stages/``), README.md, CONTRIBUTING.md, CHANGELOG.md, ``docs/``,
``examples/``, ``benchmarks/`` and ``experiments/``, plus the rendered ``--help`` of every command. None
may point at the project's internal method notes (their folder, their file names, "the spec"), at a
summary of a paper, or quote a default as "[paper: …]" without saying which paper (the short names
are listed in docs/methods.md §11). Tests are not shipped and may name anything.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIRS = ("wsss", "wsss_cli", "stages", "docs", "examples", "benchmarks", "experiments")
SHIPPED_FILES = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".txt", ".toml", ".cfg", ".rst", ".json", ".yaml", ".yml"}

#: internal method-note file names (a word boundary on the left, so e.g. ``cam-results.md`` is fine)
NOTE_FILES = ("notation", "cam", "self-labeling", "regularized-losses", "annotations", "evaluation", "urss", "spml")

FORBIDDEN = {
    "a path outside the repository": re.compile(r"\.\./shared|/work/shared"),
    "the notes folder": re.compile(r"\bspec/"),
    "a method-note file name": re.compile(r"(?<![\w./-])(?:%s)\.md\b" % "|".join(map(re.escape, NOTE_FILES))),
    "a paper's text file": re.compile(r"hfpl-isl-fsl|regularized-losses-densecrf|soft-self-labeling-potts|"
                                      r"spml-pixel-to-segment|urss-uncertainty-reduction|\bseeds/[\w-]+\.txt"),
    "'the spec'": re.compile(r"\bthe\s+specs?\b", re.IGNORECASE),
    # the word used as a source ("(spec (11))", "spec option"); ``spec = …`` / ``spec.attr`` are code
    "'spec' as a source": re.compile(r"\bspecs?\b(?!\s*(?:=|\.\w|is\b))", re.IGNORECASE),
    "'the summary'": re.compile(r"\b(?:the|unverified)\s+summary\b", re.IGNORECASE),
    "an unnamed '[paper …]' source": re.compile(r"\[\s*(?:the\s+)?paper\b", re.IGNORECASE),
}


def shipped_files() -> list[Path]:
    files = [ROOT / name for name in SHIPPED_FILES if (ROOT / name).is_file()]
    for folder in SHIPPED_DIRS:
        base = ROOT / folder
        if base.is_dir():
            files += sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                            and "__pycache__" not in p.parts and not any(s.endswith(".egg-info") for s in p.parts))
    return files


#: checked only in prose: comments and strings of Python files (``spec`` is a fine variable name)
PROSE_ONLY = ("'spec' as a source",)


def python_prose(text: str) -> dict[int, str]:
    """Line number → the comment and string text on that line of Python source ``text``."""
    prose: dict[int, str] = {}
    kinds = {tokenize.COMMENT, tokenize.STRING} | {getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in kinds:
            for offset, part in enumerate(tok.string.splitlines()):
                number = tok.start[0] + offset
                prose[number] = prose.get(number, "") + " " + part
    return prose


def violations(text: str, python: bool = False) -> list[tuple[int, str, str]]:
    """``(line number, what, line)`` of every forbidden citation in ``text`` (``python``: Python source)."""
    prose = python_prose(text) if python else None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN.items():
            where = prose.get(number, "") if (prose is not None and what in PROSE_ONLY) else line
            if pattern.search(where):
                found.append((number, what, line.strip()))
    return found


def test_patterns_catch_what_they_should():
    """The checker itself: each bad form is caught, the good ones are not."""
    bad = ["see ../shared/spec/notation.md", "Spec: ``cam.md``", "as in the spec", "(spec (11))",
           "[paper: 60]", "[paper VOC: 9]", "[paper's best: collision]", "the summary's value",
           "the unverified summary of the paper", "self-labeling.md §6", "spec/annotations.md",
           "--calibrate /work/shared/data/camvid", "(paper: hfpl-isl-fsl-binomial-cams.txt)"]
    good = ["docs/methods.md §4.5", "[Zhang & Boykov 2025: 60]", "docs/cam-results.md", "spec = READERS.get(k)",
            "if spec is None:", "spec.soft", "docs/methods.md, DenseCRF loss", "a specific value"]
    assert [line for line in bad if not violations(line)] == []
    assert [line for line in good if violations(line)] == []
    code = 'def f(spec):\n    if not spec:  # see the spec\n        return "spec option"\n    return spec\n'
    assert [(n, what) for n, what, _ in violations(code, python=True)] == [
        (2, "'the spec'"), (2, "'spec' as a source"), (3, "'spec' as a source")]


def test_shipped_files_cite_only_the_repository_or_papers_by_name():
    files = shipped_files()
    assert any(p.name == "methods.md" for p in files), "docs/methods.md is the reference the rule points to"
    bad = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, what, line in violations(text, python=path.suffix == ".py"):
            bad.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line[:120]}")
    assert not bad, "cite docs/methods.md (by section) or the paper by name instead:\n" + "\n".join(bad)


def _commands():
    import typer.main

    from wsss_cli.main import app

    def walk(cmd, path):
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, path + [name])

    return app, list(walk(typer.main.get_command(app), []))


def test_every_help_text_cites_only_the_repository_or_papers_by_name():
    app, paths = _commands()
    assert len(paths) > 5
    runner = CliRunner()
    bad = []
    for path in paths:
        result = runner.invoke(app, path + ["--help"], terminal_width=400)
        assert result.exit_code == 0, (path, result.output)
        # undo rich's panel borders and line wrapping before matching
        text = re.sub(r"\s+", " ", result.output.replace("│", " ").replace("╭", " ").replace("╰", " "))
        name = " ".join(["wsss"] + path)
        bad += [f"{name} --help: {what}" for _, what, _ in violations(text)]
        if "%%" in text:
            bad.append(f"{name} --help: a doubled '%%' (help text is printed as written: write '%')")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("section", ["normalization", "densecrf-loss", "self-labeling", "solver", "cam",
                                     "annotations", "evaluation", "bibliography"])
def test_methods_page_keeps_its_anchors(section):
    """Code cites these anchors of docs/methods.md; renaming one breaks those citations."""
    text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    assert f'<a id="{section}"></a>' in text
