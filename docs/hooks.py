"""mkdocs hook: a page includes a section of README.md, so that the site and the README cannot drift.

``<!-- include README: ## Heading -->`` on a line of its own becomes the text under that heading
in README.md, up to the next heading of any level (subsections are included one by one). A
heading the README no longer has fails the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkdocs.exceptions import PluginError

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

README = Path(__file__).resolve().parent.parent / "README.md"
INCLUDE = re.compile(r"^<!-- include README: (#+ .+?) -->$", re.MULTILINE)
HEADING = re.compile(r"#+ ")
FENCE = re.compile(r"(```|~~~)")
DOCS_LINK = re.compile(r"\]\(docs/([^)]+)\)")  # a README link into docs/: relative to the page here


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if not INCLUDE.search(markdown):
        return markdown
    readme = README.read_text(encoding="utf-8")
    return INCLUDE.sub(lambda found: readme_section(readme, found.group(1), page.file.src_uri), markdown)


def on_serve(server: Any, *, config: MkDocsConfig, builder: Any) -> Any:
    server.watch(str(README))  # `mkdocs serve` rebuilds when the README changes too
    return server


def readme_section(readme: str, heading: str, page: str) -> str:
    """The lines under ``heading`` (written with its ``#``s) up to the next heading outside a code block."""
    lines = readme.splitlines()
    try:
        start = lines.index(heading) + 1
    except ValueError:
        raise PluginError(f"{page} includes {heading!r}, a heading README.md does not have") from None
    body: list[str] = []
    fenced = False
    for line in lines[start:]:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and HEADING.match(line):
            break
        body.append(line)
    here = posixpath.dirname(page)
    text = "\n".join(body).strip("\n")
    return DOCS_LINK.sub(lambda link: f"]({posixpath.relpath(link.group(1), here or '.')})", text)
