#!/usr/bin/env python3
"""Fail on an import cycle between the top-level modules of a crate, or on a forbidden import.

Usage: module_deps.py CRATE_SRC_DIR [--forbid FROM=TO[,TO...]] ...

A crate's top-level modules are the files and folders directly under its src/ (`store/` and
everything in it is `store`). An edge A -> B is any path `crate::B...` written in a file of A (in a
`use` line or in code), or `super::B` from a file directly under src/. Comments are skipped. An
edge inside one module (store/sqlite.rs naming crate::store::...) is not an edge.

Exit status 1, with every cycle and forbidden edge named, when the graph is not as asked.
"""

import argparse
import pathlib
import re
import sys

PATH_RE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` names several modules in one group.
GROUP_RE = re.compile(r"\bcrate::\{([^}]*)\}", re.S)
SUPER_RE = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def top_module(src: pathlib.Path, file: pathlib.Path) -> str:
    rel = file.relative_to(src)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem  # lib.rs -> lib, main.rs -> main, push.rs -> push


def edges_of(src: pathlib.Path) -> dict[str, set[str]]:
    modules = {top_module(src, f) for f in src.rglob("*.rs")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for file in sorted(src.rglob("*.rs")):
        here = top_module(src, file)
        text = strip_comments(file.read_text(encoding="utf-8"))
        names = set(PATH_RE.findall(text))
        for group in GROUP_RE.findall(text):
            for part in group.split(","):
                head = part.strip().split("::", 1)[0].strip()
                if head:
                    names.add(head)
        if len(file.relative_to(src).parts) == 1:
            names |= set(SUPER_RE.findall(text))
        for name in names:
            if name in modules and name != here:
                graph[here].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=pathlib.Path)
    parser.add_argument("--forbid", action="append", default=[], metavar="FROM=TO[,TO...]")
    args = parser.parse_args()
    graph = edges_of(args.src)
    problems = []
    for component in cycles(graph):
        inner = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        problems.append(f"import cycle between {', '.join(component)}: {'; '.join(inner)}")
    for rule in args.forbid:
        sources, _, targets = rule.partition("=")
        for source in sources.split(","):
            for target in targets.split(","):
                if target in graph.get(source, set()):
                    problems.append(f"forbidden import: {source} -> {target}")
    for problem in problems:
        print(f"{args.src}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
