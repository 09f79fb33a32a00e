"""Draw a task graph or a compiled plan: Graphviz DOT (rendered by the ``dot``
binary, no Python bindings needed) and Mermaid flowcharts.

A plan is drawn with one cluster per partition, labelled and coloured by backend;
a bare graph is grouped by the backend each node asks for. Everything here is one
linear pass over the nodes that appends to a list of strings, so a 100k-node graph
gives its DOT source in well under a second; only ``dot`` itself is slow on it.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .protocol import CACHE_BACKEND, ENGINE_BACKEND, TaskState
from .spec import Node, TaskKind

__all__ = ["Drawing", "to_dot", "to_mermaid", "visualize"]

FORMATS = frozenset({"svg", "png", "pdf", "dot", "jpg", "jpeg", "gif", "ps", "json"})
RANKDIRS = frozenset({"TB", "LR", "BT", "RL"})
INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH; install Graphviz to render drawings "
    "(`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`)"
)

# Soft pastels: black text stays readable on every one of them.
PALETTE = (
    "#dbe9f6", "#fde2c8", "#d9f0d3", "#e8dff5", "#fff3b0",
    "#f9d5e5", "#d4f1f4", "#eadbc8", "#e2f0cb", "#f2e1f0",
)  # fmt: skip
ENGINE_COLOUR = "#eeeeee"
DOT_SHAPES = {
    TaskKind.FUNCTION: 'shape=box, style="rounded,filled"',
    TaskKind.EXECUTABLE: 'shape=box3d, style="filled"',
    TaskKind.PROMPT: 'shape=note, style="filled"',
    TaskKind.BLOCK: 'shape=tab, style="filled"',
}
MERMAID_SHAPES = {
    TaskKind.FUNCTION: ("(", ")"),
    TaskKind.EXECUTABLE: ("[[", "]]"),
    TaskKind.PROMPT: ("{{", "}}"),
    TaskKind.BLOCK: ("[/", "/]"),
}

FILLS = {
    TaskState.DONE: "#b7e4c7",
    TaskState.FAILED: "#f4a3a3",
    TaskState.CANCELLED: "#d0d0d0",
}
OPEN_FILL, ERROR_FILL = "white", "#f4a3a3"

#: (cluster id, backend, keys); one cluster / subgraph each, id "" for no cluster
Groups = list[tuple[str, str, list[str]]]


# What is drawn, by its shape: this module is a tool above the compiler and the
# executor and imports neither (their objects draw themselves through it).


class _Partition(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def backend(self) -> str: ...
    @property
    def keys(self) -> tuple[str, ...]: ...


class PlanLike(Protocol):
    """A compiled plan (:class:`~asyncflow_graph.compiler.Plan`)."""

    @property
    def nodes(self) -> Mapping[str, Node]: ...
    @property
    def partitions(self) -> Sequence[_Partition]: ...
    @property
    def errors(self) -> Mapping[str, BaseException]: ...


class RunStates(Protocol):
    """How each task stands after (or during) a run: a
    :class:`~asyncflow_graph.executor.events.RunView`."""

    @property
    def durations(self) -> Mapping[str, float]: ...
    def outcome(self, key: str) -> TaskState | None: ...
    def error(self, key: str) -> BaseException | None: ...


Drawable = PlanLike | Mapping[str, Node]


def _is_plan(obj: Drawable) -> bool:
    return hasattr(obj, "partitions")


def _label(backend: str) -> str:
    return "@cache (served from the cache)" if backend == CACHE_BACKEND else backend


def backend_colour(backend: str) -> str:
    """A colour per backend name, stable across runs (crc32, not salted ``hash``)."""
    if backend == ENGINE_BACKEND:
        return ENGINE_COLOUR
    return PALETTE[zlib.crc32(backend.encode()) % len(PALETTE)]


# --------------------------------------------------------------------------- escaping


def dot_escape(text: str) -> str:
    """Text for a double-quoted DOT string: a backslash would start an escape
    (``\\N``, ``\\l``) and a quote would end the string, so both are escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")


def mermaid_escape(text: str) -> str:
    """Text for a quoted Mermaid label; Mermaid uses ``#code;`` entities."""
    return (
        text.replace("#", "#35;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("\n", " ")
    )


# --------------------------------------------------------------------------- structure


def _nodes_of(obj: Drawable) -> Mapping[str, Node]:
    return obj.nodes if _is_plan(obj) else obj  # type: ignore[union-attr,return-value]


def _groups(obj: Drawable) -> Groups:
    """Plans: their partitions. Graphs: nodes by requested backend (not yet compiled,
    so there are no partitions), blocks on the engine's own loop."""
    nodes = _nodes_of(obj)
    if _is_plan(obj):
        assert not isinstance(obj, Mapping)
        groups: Groups = [(f"P{p.id}", p.backend, list(p.keys)) for p in obj.partitions]
        placed = {k for _, _, keys in groups for k in keys}
        # Nodes the compiler put in no partition still deserve a box.
        rest = [k for k in nodes if k not in placed]
        if rest:
            groups.append(("", "", rest))
        return groups
    by_backend: dict[str, list[str]] = {}
    for key, node in nodes.items():
        name = ENGINE_BACKEND if node.kind is TaskKind.BLOCK else node.options.backend or "default"
        by_backend.setdefault(name, []).append(key)
    return [(f"G{i}", name, keys) for i, (name, keys) in enumerate(by_backend.items())]


def _errors(obj: Drawable) -> Mapping[str, BaseException]:
    return obj.errors if _is_plan(obj) else {}  # type: ignore[union-attr]


def _fill(key: str, state: RunStates | None, errors: Mapping[str, BaseException]) -> str:
    if state is not None:
        fill = FILLS.get(state.outcome(key))  # type: ignore[arg-type]
        if fill is not None:
            return fill
    return ERROR_FILL if key in errors else OPEN_FILL


def _tooltip(key: str, state: RunStates | None, errors: Mapping[str, BaseException]) -> str:
    exc = errors.get(key)
    if exc is None and state is not None:
        exc = state.error(key)
    return key if exc is None else f"{key}: {type(exc).__name__}: {exc}"


def _short(key: str) -> str:
    return key.rpartition(".")[2]


def _check_rankdir(rankdir: str) -> None:
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir= must be one of {sorted(RANKDIRS)}, got {rankdir!r}")


# --------------------------------------------------------------------------- DOT


def _dot_nodes(
    keys: list[str],
    nodes: Mapping[str, Node],
    state: RunStates | None,
    errors: Mapping[str, BaseException],
    indent: str,
) -> Iterator[str]:
    for key in keys:
        node = nodes[key]
        bad = key in errors or (state is not None and state.error(key) is not None)
        colour = ', color="#c0392b", penwidth=2' if bad else ""
        text = f"{node.name}\n{_short(key)}"
        if state is not None and key in state.durations:
            text += f"\n{state.durations[key]:.3g} s"
        label = dot_escape(text)
        yield (
            f'{indent}"{dot_escape(key)}" [label="{label}", {DOT_SHAPES[node.kind]}, '
            f'fillcolor="{_fill(key, state, errors)}", '
            f'tooltip="{dot_escape(_tooltip(key, state, errors))}"{colour}];'
        )


def _dot_edges(nodes: Mapping[str, Node]) -> Iterator[str]:
    for key, node in nodes.items():
        if not node.deps:
            continue
        target = dot_escape(key)
        # dict.fromkeys: a dep passed twice is still one edge; outside deps are not drawn.
        for dep in dict.fromkeys(node.deps):
            if dep in nodes:
                yield f'  "{dot_escape(dep)}" -> "{target}";'


def to_dot(
    obj: Drawable,
    *,
    state: RunStates | None = None,
    rankdir: str = "TB",
    graph_attrs: Mapping[str, Any] | None = None,
) -> str:
    """The Graphviz DOT source for ``obj`` (a :class:`Graph` or a compiled :class:`Plan`)."""
    _check_rankdir(rankdir)
    nodes, errors = _nodes_of(obj), _errors(obj)
    out = ["digraph asyncflow {", f"  rankdir={rankdir};", '  node [fontname="Helvetica"];']
    for name, value in (graph_attrs or {}).items():
        out.append(f'  {name}="{dot_escape(str(value))}";')
    for cid, backend, keys in _groups(obj):
        if not cid:
            out.extend(_dot_nodes(keys, nodes, state, errors, "  "))
            continue
        # Plans name clusters by partition id (cluster_P3), so DOT matches plan.explain().
        out.append(f"  subgraph cluster_{cid} {{")
        out.append(f'    label="{dot_escape(_label(backend))}"; style="filled,rounded";')
        out.append(f'    fillcolor="{backend_colour(backend)}"; color="#888888";')
        out.extend(_dot_nodes(keys, nodes, state, errors, "    "))
        out.append("  }")
    out.extend(_dot_edges(nodes))
    out.append("}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Mermaid


def to_mermaid(obj: Drawable, *, rankdir: str = "TB") -> str:
    """A Mermaid ``flowchart`` for ``obj``: one subgraph per partition (plans) or
    per backend (graphs). Node ids are ``n0, n1, ...`` since keys may hold
    characters Mermaid ids cannot."""
    _check_rankdir(rankdir)
    nodes, errors = _nodes_of(obj), _errors(obj)
    ids = {key: f"n{i}" for i, key in enumerate(nodes)}
    out = [f"flowchart {rankdir}"]
    for cid, backend, keys in _groups(obj):
        indent = "    " if cid else "  "
        if cid:
            out.append(f'  subgraph {cid}["{mermaid_escape(_label(backend))}"]')
        for key in keys:
            node = nodes[key]
            left, right = MERMAID_SHAPES[node.kind]
            text = mermaid_escape(f"{node.name} ({_short(key)})")
            out.append(f'{indent}{ids[key]}{left}"{text}"{right}')
        if cid:
            out.append("  end")
    for key, node in nodes.items():
        for dep in dict.fromkeys(node.deps):
            if dep in ids:
                out.append(f"  {ids[dep]} --> {ids[key]}")
    if errors:
        out.append("  classDef error fill:#f4a3a3,stroke:#c0392b,stroke-width:2px")
        out.append("  class " + ",".join(ids[k] for k in errors if k in ids) + " error")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- rendering


def _format_for(filename: str | None, format: str | None) -> str:
    if format is None:
        suffix = Path(filename).suffix.lower().lstrip(".") if filename else ""
        format = {"gv": "dot", "": "svg"}.get(suffix, suffix)
    format = format.lower()
    if format not in FORMATS:
        raise ValueError(f"unsupported drawing format {format!r}; use one of {sorted(FORMATS)}")
    return format


def render(source: str, format: str) -> bytes | None:
    """``source`` rendered by ``dot -T<format>``; None when Graphviz is not installed."""
    if format == "dot":
        return source.encode()
    exe = shutil.which("dot")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, f"-T{format}"], input=source.encode(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dot -T{format} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


class Drawing:
    """DOT source plus, once rendered, the bytes in ``format``. Displays inline in
    Jupyter (``_repr_svg_``) and prints as its DOT source."""

    __slots__ = ("data", "filename", "format", "source")

    def __init__(
        self,
        source: str,
        format: str = "svg",
        data: bytes | None = None,
        filename: str | None = None,
    ) -> None:
        self.source = source
        self.format = format
        self.data = data
        self.filename = filename

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        where = f" -> {self.filename}" if self.filename else ""
        return f"<Drawing {self.format}, {len(self.source)} chars of DOT{where}>"

    def _repr_svg_(self) -> str | None:
        if self.format == "svg" and self.data is not None:
            return self.data.decode()
        data = render(self.source, "svg")
        return None if data is None else data.decode()

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        svg = self._repr_svg_()
        if svg is not None:
            bundle["image/svg+xml"] = svg
        else:  # no Graphviz: show the source and how to get pictures
            from html import escape

            bundle["text/html"] = f"<p>{escape(INSTALL_HINT)}</p><pre>{escape(self.source)}</pre>"
        return bundle

    def save(self, filename: str | Path, format: str | None = None) -> Drawing:
        """Write the drawing to ``filename`` (format from its suffix unless given)."""
        return _write(self.source, str(filename), _format_for(str(filename), format))


def _write(source: str, filename: str, fmt: str) -> Drawing:
    data = render(source, fmt)
    Path(filename).parent.mkdir(parents=True, exist_ok=True)  # "out/graph.svg" makes out/
    if data is None:
        # No Graphviz: keep the work (the DOT source) and say how to get pictures.
        dot_path = str(Path(filename).with_suffix(".dot"))
        Path(dot_path).write_text(source)
        warnings.warn(f"{INSTALL_HINT}; wrote the DOT source to {dot_path}", stacklevel=3)
        return Drawing(source, "dot", None, dot_path)
    Path(filename).write_bytes(data)
    return Drawing(source, fmt, data, filename)


def visualize(
    obj: Drawable,
    filename: str | Path | None = None,
    *,
    state: RunStates | None = None,
    rankdir: str = "TB",
    format: str | None = None,
    **kwargs: Any,
) -> Drawing:
    """Draw ``obj``; with ``state`` (a run's :class:`RunStates`), colour each task by
    how it ended. ``filename``'s suffix picks the format (``format=`` overrides);
    extra keyword arguments become Graphviz graph attributes (``size="8,8"``).

    Without a filename nothing is rendered up front (a 100k-node ``dot`` run is slow);
    the drawing renders itself when displayed. Without Graphviz, the DOT source is
    still returned (and written next to ``filename``) with a warning."""
    source = to_dot(obj, state=state, rankdir=rankdir, graph_attrs=kwargs)
    name = None if filename is None else str(filename)
    fmt = _format_for(name, format)
    if name is not None:
        return _write(source, name, fmt)
    if format is None or fmt == "dot":
        return Drawing(source, fmt, source.encode() if fmt == "dot" else None)
    data = render(source, fmt)
    if data is None:
        warnings.warn(INSTALL_HINT, stacklevel=2)
    return Drawing(source, fmt if data is not None else "dot", data)
