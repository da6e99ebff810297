#!/usr/bin/env python3
"""Compiles and runs the examples in README.md and docs/*.md, so the docs cannot rot.

A fenced block's info string is `LANG [fragment] [file=NAME] [run]`:
  mlir            written to a file and compiled to artifacts with attnc (must succeed)
  python          the page's python blocks, in order, run as one script (must exit 0)
  sh run          run with bash after the files and python (must exit 0)
  file=NAME       any block: written to NAME in the page's work directory first
  fragment        an excerpt (undefined values, `...`): not compiled, and the page's text says
                  it is an excerpt; every other block of the languages above runs
Each page runs in its own empty work directory with $ATTNC_PREFIX (attnc installed from
--build-dir) and $PYTHONPATH (the bindings) set. Prints one line per checked block; exits 1 on the first failure
of a page, after checking every page.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    flags: set[str]
    file: str | None
    text: str

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def parse(page: Path) -> list[Block]:
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        words = m.group(2).split()
        file = next((w[5:] for w in words if w.startswith("file=")), None)
        flags = {w for w in words if not w.startswith("file=")}
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            sys.exit(f"{page}:{start}: unterminated code block")
        blocks.append(Block(page, start, m.group(1), flags, file, "\n".join(body) + "\n"))
        i += 1
    return blocks


def run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> bool:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAIL {what}: {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return False
    return True


def check_page(page: Path, args, env: dict[str, str]) -> tuple[int, bool]:
    blocks = [b for b in parse(page) if "fragment" not in b.flags]
    checked = 0
    with tempfile.TemporaryDirectory(prefix="attnc-docs-") as tmp:
        work = Path(tmp)
        for b in blocks:
            if b.file:
                path = work / b.file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(b.text)
        for n, b in enumerate(blocks):
            if b.lang != "mlir":
                continue
            src = work / (b.file or f"example_{n}.mlir")
            if not b.file:
                src.write_text(b.text)
            out = work / f"artifacts_{n}"
            if not run([args.attnc, str(src), "-o", str(out)], work, env, b.where()):
                return checked, False
            print(f"ok   {b.where()}: mlir compiles")
            checked += 1
        python = [b for b in blocks if b.lang == "python"]
        if python:
            script = work / "page_examples.py"
            script.write_text("".join(b.text for b in python))
            if not run([args.python, str(script)], work, env, f"{page} python blocks"):
                return checked, False
            print(f"ok   {page}: {len(python)} python block(s) run")
            checked += len(python)
        for b in blocks:
            if b.lang == "sh" and "run" in b.flags:
                if not run(["bash", "-euo", "pipefail", "-c", b.text], work, env, b.where()):
                    return checked, False
                print(f"ok   {b.where()}: sh runs")
                checked += 1
    return checked, True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="the repository")
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--pythonpath", default="", help="where `import attnc` is found")
    ap.add_argument("--build-dir", type=Path,
                    help="installed into a temporary $ATTNC_PREFIX when a page has `sh run` blocks")
    ap.add_argument("pages", nargs="*", type=Path, help="default: README.md and docs/*.md")
    args = ap.parse_args()
    args.attnc = str(Path(args.attnc).resolve())
    if args.build_dir:
        args.build_dir = args.build_dir.resolve()
    pages = args.pages or [args.root / "README.md", *sorted((args.root / "docs").glob("*.md"))]
    env = dict(os.environ)
    env["PATH"] = f"{Path(args.attnc).parent}{os.pathsep}{env['PATH']}"
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    total, failed = 0, []
    with tempfile.TemporaryDirectory(prefix="attnc-prefix-") as prefix:
        if args.build_dir and any(b.lang == "sh" and "run" in b.flags
                                  for page in pages for b in parse(page)):
            if not run(["cmake", "--install", str(args.build_dir), "--prefix", prefix],
                       Path(prefix), env, "installing attnc"):
                return 1
            env["ATTNC_PREFIX"] = prefix
        for page in pages:
            checked, ok = check_page(page, args, env)
            total += checked
            if not ok:
                failed.append(str(page))
    print(f"{total} example block(s) checked in {len(pages)} page(s)")
    if failed:
        print("failing pages: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
