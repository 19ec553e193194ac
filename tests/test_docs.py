"""Docs as tests (datasette style): every operator, view directive, magic option and setting is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parquedb_ibis.compile.filters import FIELD_OPERATORS, LOGICAL_OPERATORS
from parquedb_ibis.compile.views import DIRECTIVES
from parquedb_ibis.magic import COMMANDS, FORMATS, ParqueDBMagics

DOCS = Path(__file__).resolve().parent.parent / "docs"


def docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("**/*.md")))


def mentions(text: str, word: str) -> bool:
    """``word`` as a whole token: ``$in`` does not count inside ``$inc``, nor ``--limit`` inside ``--limits``."""
    return re.search(rf"(?<![\w$-]){re.escape(word)}(?![\w-])", text) is not None


def magic_options() -> list[str]:
    parser = ParqueDBMagics.parquedb.parser
    return sorted({s for action in parser._actions for s in action.option_strings} - {"-h", "--help"})


@pytest.mark.parametrize("operator", sorted({*FIELD_OPERATORS, *LOGICAL_OPERATORS}))
def test_every_filter_operator_is_documented(operator):
    assert mentions(docs_text(), operator), f"filter operator {operator} is not described in docs/"


@pytest.mark.parametrize("directive", sorted(DIRECTIVES))
def test_every_view_directive_is_documented(directive):
    assert mentions(docs_text(), directive), f"view directive {directive} is not described in docs/"


@pytest.mark.parametrize("option", magic_options())
def test_every_magic_option_is_in_the_magic_reference(option):
    assert mentions((DOCS / "magic.md").read_text(encoding="utf-8"), option), f"%parquedb {option} is not in docs/magic.md"


@pytest.mark.parametrize("trait", sorted(ParqueDBMagics.class_traits(config=True)))
def test_every_magic_setting_is_in_the_magic_reference(trait):
    text = (DOCS / "magic.md").read_text(encoding="utf-8")
    assert f"`{trait}`" in text, f"ParqueDBMagics.{trait} is not in docs/magic.md"


@pytest.mark.parametrize("word", [*COMMANDS, *FORMATS])
def test_every_magic_command_and_format_is_in_the_magic_reference(word):
    assert f"`{word}" in (DOCS / "magic.md").read_text(encoding="utf-8")


def test_the_magic_option_list_is_what_the_parser_takes():
    assert magic_options() == ["--explain", "--format", "--full", "--limit", "--out", "-o"]


def test_docs_link_to_files_that_exist():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
