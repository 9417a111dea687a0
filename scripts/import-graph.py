"""Prints the crate's module import graph and any circles in it.

Each file under src/ is a module (`src/copy/mod.rs` is `copy`, `src/copy/single.rs` is
`copy::single`). A module imports another when its code names a path into it: `crate::a::b`,
`super::x` or a child's name after `mod child;`. A path is resolved to the longest module it
names (`crate::copy::Outcome` is the module `copy`). A parent that uses its children sits above
them, so a child that uses its parent makes a circle. The crate root (lib.rs) only declares and
re-exports. No module may be reached again by following imports from itself; exits 1 when one
is.

Usage: python3 scripts/import-graph.py [--edges]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return "crate" if parts == ["lib"] else "main"
    return "::".join(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def without_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod tests { ... }`: unit tests may use anything."""
    marker = text.find("#[cfg(test)]")
    return text if marker < 0 else text[:marker]


def expand_use_groups(text: str) -> list[str]:
    """Every path a `use` names, with `{a, b::c}` groups expanded."""
    paths = []
    for match in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand(match.group(1).replace("\n", " ").replace(" ", "")))
    return paths


def expand(tree: str) -> list[str]:
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, inner = tree[:brace], tree[brace + 1:tree.rfind("}")]
    items, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    items.append(current)
    return [path for item in items if item for path in expand(prefix + item)]


def main() -> int:
    modules = {module_name(path): path for path in SRC.rglob("*.rs")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        text = without_tests(strip_comments(path.read_text()))
        own = name.split("::") if name not in ("crate", "main") else []
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
        paths = expand_use_groups(text) + re.findall(r"\bcrate(?:::\w+)+", text)
        paths += [child for child in children if re.search(rf"(?<!::)\b{child}::", text)]
        for used in paths:
            segments = used.split("::")
            if segments[0] == "crate":
                absolute = segments[1:]
            elif segments[0] == "super":
                base = own[:-1]
                rest = segments[1:]
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
                absolute = base + rest
            elif segments[0] in children:
                absolute = own + segments
            else:
                continue  # another crate, or std
            target = None
            for length in range(len(absolute), 0, -1):
                candidate = "::".join(absolute[:length])
                if candidate in modules:
                    target = candidate
                    break
            target = target or "crate"
            if target != name:
                edges[name].add(target)
    # The crate root only declares modules and re-exports: it is above everything, and a module
    # that names a re-export at the root (`crate::Replicator`) makes a circle through it.
    edges["crate"] = set()
    if "--edges" in sys.argv:
        for name in sorted(edges):
            print(f"{name} -> {', '.join(sorted(edges[name])) or '(nothing)'}")
    circles = find_circles(edges)
    for circle in circles:
        print("circle: " + " -> ".join(circle))
    print(f"{len(modules)} modules, {sum(map(len, edges.values()))} imports, {len(circles)} circles")
    return 1 if circles else 0


def find_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    circles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return circles


if __name__ == "__main__":
    sys.exit(main())
