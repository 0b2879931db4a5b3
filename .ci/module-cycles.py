"""Fails when two modules of host/src import each other, directly or through others.

Edges come from `crate::a::b` and `super::x` paths (imports and inline paths alike), each
resolved to the longest prefix that is a module file; `#[cfg(test)] mod tests` blocks are left
out. A parent declaring its children (`mod x;`, `pub use x::Y`) is not an edge back.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "host/src"
mods = {}
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            path = os.path.join(d, f)
            name = os.path.relpath(path, root)[:-3].split(os.sep)
            if name[-1] in ("mod", "lib", "main"):
                name = name[:-1]
            mods["::".join(name)] = path


def resolve(segments):
    for n in range(len(segments), 0, -1):
        m = "::".join(segments[:n])
        if m in mods:
            return m
    return None


edges = {m: set() for m in mods}
for m, path in mods.items():
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    here = m.split("::") if m else []
    # `super` of a file module is its folder's module; of a mod.rs, the folder above.
    parent = here[:-1]
    for hit in re.finditer(r"\b(crate|super)((?:::\{?[A-Za-z_][A-Za-z0-9_]*)+)", text):
        segments = [s.strip("{") for s in hit.group(2).split("::") if s]
        if hit.group(1) == "super":
            segments = parent + segments
        target = resolve(segments)
        if target is not None and target != m:
            edges[m].add(target)

index, low, stack, on_stack, cycles = {}, {}, [], set(), []


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
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
            cycles.append(sorted(component))


sys.setrecursionlimit(10_000)
for v in list(edges):
    if v not in index:
        visit(v)
for c in cycles:
    print("import cycle among:", ", ".join(x or "(crate root)" for x in c))
    for a in c:
        print(f"  {a or '(crate root)'} -> {', '.join(sorted(x for x in edges[a] if x in c))}")
print(f"{len(mods)} modules, {sum(map(len, edges.values()))} imports, {len(cycles)} cycles")
sys.exit(1 if cycles else 0)
