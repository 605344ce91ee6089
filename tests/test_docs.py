"""The documentation: the site builds with ``mkdocs build --strict``, and every Python sample in the
README and in docs/ runs, each in a fresh interpreter, against the real servers the suite starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.fresh_env import ROOT

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.servers import RedisClusterHandle

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>.+?) -->")
READS_ENV = re.compile(r"""os\.environ(?:\.get\(|\[)["']([A-Za-z0-9_]+)["']""")
# bash blocks are not run here (tests/test_demo.py runs the README's first command); an unnamed
# block is output, like the benchmark table. Any other language would be a sample nobody runs.
NOT_PYTHON = {"bash", ""}
# Blocks marked `<!-- not run: <reason> -->` in the page's source; each is reported as skipped.
EXPECTED_NOT_RUN = 0
SAMPLE_TIMEOUT = 60


def _redis_cluster_url(request: pytest.FixtureRequest) -> str:
    handle: RedisClusterHandle = request.getfixturevalue("redis_cluster_handle")
    return handle.url


# What a sample may read from the environment, and the fixture whose server answers there.
SERVERS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "REDIS_URL": lambda request: str(request.getfixturevalue("redis_url")),
    "REDIS_CLUSTER_URL": _redis_cluster_url,
    "POSTGRES_DSN": lambda request: str(request.getfixturevalue("postgres_dsn")),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, the line of its opening fence, its text."""

    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None  # the reason given by a `<!-- not run: ... -->` line right above it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks = []
    for found in FENCE.finditer(text):
        before = text[: found.start()]
        above = before.rstrip("\n").rpartition("\n")[2]
        marker = NOT_RUN.fullmatch(above.strip())
        line = before.count("\n") + 1
        reason = marker["reason"] if marker else None
        blocks.append(Block(page, line, found["lang"].strip(), found["code"], reason))
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]
SAMPLES = [block for block in BLOCKS if block.lang == "python"]


def test_every_code_block_is_a_python_sample_or_not_code() -> None:
    unknown = [f"{block.where}: ```{block.lang}" for block in BLOCKS if block.lang not in {"python", *NOT_PYTHON}]
    assert not unknown, f"blocks this test would never run (write them as ```python): {unknown}"


def test_samples_come_from_the_readme_and_the_docs_and_all_are_run() -> None:
    pages = {block.page.name for block in SAMPLES}
    assert "README.md" in pages
    assert len(pages) > 1, "no ```python block found under docs/"
    not_run = [f"{block.where} ({block.not_run})" for block in SAMPLES if block.not_run]
    assert len(not_run) == EXPECTED_NOT_RUN, f"samples marked not run: {not_run}"


@pytest.mark.parametrize(
    "sample",
    [
        pytest.param(block, id=block.where, marks=[pytest.mark.skip(reason=f"not run: {block.not_run}")])
        if block.not_run
        else pytest.param(block, id=block.where)
        for block in SAMPLES
    ],
)
def test_sample_runs(sample: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # init_from_file's default file
    for name in READS_ENV.findall(sample.code):
        if name not in SERVERS:
            pytest.fail(f"{sample.where} reads ${name}; the suite provides {sorted(SERVERS)}")
        env[name] = SERVERS[name](request)
    script = tmp_path / "sample.py"
    # Padded so that a traceback's line numbers are the page's.
    script.write_text("\n" * sample.line + sample.code, encoding="utf-8")
    done = subprocess.run(
        # Warnings fail a sample as they fail the suite; an unclosed connection at exit is not a bug here.
        [sys.executable, "-W", "error", "-W", "ignore::ResourceWarning", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SAMPLE_TIMEOUT,
        check=False,
    )
    output = f"{sample.where} (lines are the page's):\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, output
    assert "Traceback" not in done.stderr, output  # a background thread that died


def test_site_builds_strict_with_the_api_reference_rendered(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
    done = subprocess.run(
        [*build, "--site-dir", str(site)],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pages = {path.relative_to(site).as_posix(): path.read_text(encoding="utf-8") for path in site.rglob("*.html")}
    # docstring_style: sphinx at work: the field lists of try_acquire became sections.
    limiters = pages["reference/limiters/index.html"]
    for section in ("Parameters", "Returns", "Raises"):
        assert f'doc-section-title">{section}:' in limiters, section
    for name, html in pages.items():
        assert ":param " not in html, f"{name}: a Sphinx field list left unparsed"
        assert "include README:" not in html, f"{name}: a README section left unincluded"
