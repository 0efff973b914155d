#!/usr/bin/env python3
"""Parse every .cs file under client/ with tree-sitter's C# grammar.

Fails (exit 1) on any ERROR or MISSING node and prints file:line:column for
each. This is the only syntax check the .NET-only files (SIPSorcery,
System.Net.Quic) get on a machine without the .NET SDK.

Needs PyPI `tree-sitter` (0.22 or later binding API) and `tree-sitter-c-sharp`.
Usage: python3 tests/csharp/parse_all.py [ROOT]   (ROOT defaults to client/)
"""

import pathlib
import sys

try:
    import tree_sitter_c_sharp
    from tree_sitter import Language, Parser
except ImportError as exc:  # pragma: no cover - environment problem, not a test failure
    sys.exit(f"parse_all.py: {exc}; pip install tree-sitter tree-sitter-c-sharp")


def problems(root_node):
    """Yield (kind, node) for every ERROR or MISSING node, depth first."""
    cursor = root_node.walk()
    visited_children = False
    while True:
        node = cursor.node
        if not visited_children:
            if node.is_error or node.type == "ERROR":
                yield "ERROR", node
            elif node.is_missing:
                yield "MISSING", node
            # An ERROR subtree is reported once, at its top.
            if not (node.is_error or node.type == "ERROR") and cursor.goto_first_child():
                continue
        if cursor.goto_next_sibling():
            visited_children = False
            continue
        if not cursor.goto_parent():
            return
        visited_children = True


def main() -> int:
    repo = pathlib.Path(__file__).resolve().parents[2]
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else repo / "client"
    parser = Parser(Language(tree_sitter_c_sharp.language()))
    files = sorted(p for p in root.rglob("*.cs") if "node_modules" not in p.parts)
    if not files:
        print(f"parse_all.py: no .cs files under {root}", file=sys.stderr)
        return 1
    bad = 0
    for path in files:
        source = path.read_bytes()
        tree = parser.parse(source)
        found = list(problems(tree.root_node))
        try:
            shown = path.relative_to(repo)
        except ValueError:
            shown = path
        for kind, node in found:
            line, col = node.start_point
            snippet = source[node.start_byte:node.end_byte][:60].decode("utf-8", "replace")
            print(f"{shown}:{line + 1}:{col + 1}: {kind} {node.type!r} near {snippet!r}")
        if not found and tree.root_node.has_error:
            print(f"{shown}: tree-sitter reports an error it did not locate")
            found = [None]
        bad += 1 if found else 0
    print(f"parsed {len(files)} C# files, {bad} with syntax errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
