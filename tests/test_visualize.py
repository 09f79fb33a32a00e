"""Drawing graphs and plans: DOT rendered by the real ``dot`` binary, and Mermaid."""

from __future__ import annotations

import pathlib
import re
import shutil
import time
import xml.etree.ElementTree as ET

import pytest

from asyncflow_graph import (
    Graph,
    LocalExecutionBackend,
    NoopExecutionBackend,
    Plan,
    WorkflowEngine,
)
from asyncflow_graph import visualize as viz
from asyncflow_graph.protocol import TaskState
from asyncflow_graph.spec import Node, TaskKind, TaskOptions

SVG = "{http://www.w3.org/2000/svg}"
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz dot not installed")


@pytest.fixture
async def mixed():
    """A lazy engine with a compute and an ai backend, and a 3-step pipeline per doc.

    Yields (engine, handles, counter); the counter proves nothing ran."""
    compute = await LocalExecutionBackend(name="compute")
    ai = NoopExecutionBackend(name="ai")
    flow = await WorkflowEngine.create(backend=[compute, ai], execution="lazy")
    ran = {"n": 0}

    @flow.function_task
    async def load(i):
        ran["n"] += 1
        return f"doc-{i}"

    @flow.prompt_task(backend="ai")
    async def summarize(doc):
        return f"Summarize {doc}"

    @flow.function_task
    async def store(summary, doc):
        ran["n"] += 1
        return f"{doc}:{summary}"

    handles = []
    for i in range(2):
        doc = load(i)
        handles.append(store(summarize(doc), doc))
    try:
        yield flow, handles, ran
    finally:
        await flow.shutdown()


def parse_svg(path):
    root = ET.parse(path).getroot()
    clusters = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cluster"]
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    return clusters, nodes, edges


def cluster_labels(clusters):
    return sorted(t.text for c in clusters for t in c.iter(f"{SVG}text"))


def node_texts(nodes):
    return [" ".join(t.text for t in n.iter(f"{SVG}text")) for n in nodes]


def node_fills(nodes):
    """node title (its DOT id, the task key) -> fill colour of its shape."""
    out = {}
    for n in nodes:
        title = n.find(f"{SVG}title").text
        shapes = [e for e in n.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon")]
        out[title] = shapes[0].get("fill")
    return out


# --------------------------------------------------------------------------- SVG through dot


@needs_dot
async def test_plan_svg_one_cluster_per_partition(mixed, tmp_path):
    flow, handles, ran = mixed
    plan = flow.compile()
    assert isinstance(plan, Plan)
    drawing = flow.visualize("out.svg")
    assert drawing.format == "svg" and drawing.filename == "out.svg"
    assert drawing.data is not None and drawing.data.lstrip().startswith(b"<?xml")
    clusters, nodes, edges = parse_svg(tmp_path / "out.svg")
    assert len(clusters) == len(plan.partitions)
    assert set(cluster_labels(clusters)) == {p.backend for p in plan.partitions}
    assert {"compute", "ai"} <= set(cluster_labels(clusters))
    assert len(nodes) == 6
    texts = node_texts(nodes)
    assert sorted(t.split()[0] for t in texts) == ["load"] * 2 + ["store"] * 2 + ["summarize"] * 2
    # load->summarize, load->store, summarize->store, for each doc
    assert len(edges) == 6
    assert ran["n"] == 0  # drawing compiles, never runs


@needs_dot
async def test_handle_and_graph_visualize(mixed, tmp_path):
    flow, handles, ran = mixed
    handles[0].visualize("one.svg")
    _, nodes, _ = parse_svg(tmp_path / "one.svg")
    assert len(nodes) == 3  # only the first pipeline: culled to the handle's ancestors
    flow.graph.visualize("graph.svg")
    clusters, nodes, _ = parse_svg(tmp_path / "graph.svg")
    # An uncompiled graph is grouped by requested backend (None -> "default").
    assert cluster_labels(clusters) == ["ai", "default"]
    assert len(nodes) == 6
    assert ran["n"] == 0


async def test_a_drawing_makes_its_folder(mixed, tmp_path):
    """``visualize("out/graph.svg")`` makes ``out/`` (the examples' convention), with or
    without Graphviz (then the DOT source lands there)."""
    flow, _, _ = mixed
    drawing = flow.graph.visualize(tmp_path / "out" / "deeper" / "graph.svg")
    assert drawing.filename is not None and (tmp_path / "out" / "deeper").is_dir()
    assert pathlib.Path(drawing.filename).parent == tmp_path / "out" / "deeper"
    assert pathlib.Path(drawing.filename).is_file()


@needs_dot
async def test_png_and_pdf_magic(mixed, tmp_path):
    flow, _, _ = mixed
    png = flow.visualize("out.png")
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.format == "png" and png.data[:4] == b"\x89PNG"
    pdf = flow.visualize("out.svg", format="pdf")  # format= wins over the suffix
    assert pdf.format == "pdf"
    assert (tmp_path / "out.svg").read_bytes()[:5] == b"%PDF-"


@needs_dot
async def test_states_coloured_after_run(mixed, tmp_path):
    flow, handles, ran = mixed
    assert await handles[0] == "doc-0:Dummy Prompt Output"
    assert ran["n"] == 2
    flow.visualize("after.svg")
    fills = node_fills(parse_svg(tmp_path / "after.svg")[1])
    done = {k for k, v in fills.items() if v == viz.FILLS[TaskState.DONE]}
    open_ = {k for k, v in fills.items() if v == viz.OPEN_FILL}
    assert len(done) == 3 and len(open_) == 3
    assert set(flow.graph.cull([handles[0].key])) == done
    # Tasks whose backend reported RUNNING carry their duration in the label.
    source = flow.visualize().source
    timed = [k for k in done if k in flow.run_view.durations]
    assert timed, "no durations recorded"
    assert re.search(r"\d s\"", source)


@needs_dot
async def test_compile_time_error_is_red(tmp_path):
    flow = await WorkflowEngine.create(backend=await LocalExecutionBackend(), execution="lazy")
    try:

        @flow.function_task(backend="nope")
        async def lost():
            return 1

        @flow.function_task
        async def fine():
            return 2

        bad, good = lost(), fine()
        plan = flow.compile()
        assert bad.key in plan.errors and good.key not in plan.errors
        drawing = flow.visualize("err.svg")
        assert "BackendNotFoundError" in drawing.source
        fills = node_fills(parse_svg(tmp_path / "err.svg")[1])
        assert fills[bad.key] == viz.ERROR_FILL
        assert fills[good.key] == viz.OPEN_FILL
        assert "classDef error" in viz.to_mermaid(plan)
    finally:
        await flow.shutdown()


@needs_dot
def test_drawing_repr_svg_and_save(tmp_path):
    g = make_graph(3)
    drawing = viz.visualize(g)
    assert drawing.data is None  # nothing rendered up front
    svg = drawing._repr_svg_()
    assert svg is not None and "<svg" in svg
    assert "image/svg+xml" in drawing._repr_mimebundle_()
    assert str(drawing) == drawing.source
    saved = drawing.save(tmp_path / "again.png")
    assert saved.data[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- without dot


async def test_dot_file_needs_no_binary(mixed, tmp_path, monkeypatch):
    flow, _, ran = mixed
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    drawing = flow.visualize("plan.dot")
    text = (tmp_path / "plan.dot").read_text()
    assert text == drawing.source and drawing.format == "dot"
    assert text.count("subgraph cluster_P") == len(flow.compile().partitions)
    assert ran["n"] == 0


async def test_no_dot_falls_back_and_warns(mixed, tmp_path, monkeypatch):
    flow, _, _ = mixed
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        drawing = flow.visualize("out.svg")
    assert not (tmp_path / "out.svg").exists()
    assert (tmp_path / "out.dot").read_text() == drawing.source
    assert drawing.source.startswith("digraph")
    assert drawing.data is None and drawing.filename == "out.dot"
    assert drawing._repr_svg_() is None
    with pytest.warns(UserWarning, match="brew install graphviz"):
        viz.visualize(flow.graph, format="png")


# --------------------------------------------------------------------------- source level


def make_graph(n, name="f", kind=TaskKind.FUNCTION, backend=None):
    opts = TaskOptions(backend=backend)
    return Graph(
        Node(f"task.{i:06d}", name, kind, print, (), {}, (f"task.{i - 1:06d}",) if i else (), opts)
        for i in range(n)
    )


def test_dot_escapes_quotes_and_backslashes():
    g = Graph(
        [Node('we"ird\\key', 'say "hi"\\n', TaskKind.PROMPT, print, (), {}, (), TaskOptions())]
    )
    src = viz.to_dot(g)
    assert '"we\\"ird\\\\key"' in src
    assert 'label="say \\"hi\\"\\\\n\\n' in src
    assert "shape=note" in src
    if HAVE_DOT:
        assert b"<svg" in viz.render(src, "svg")  # dot accepts it


def test_shapes_by_kind_and_bad_arguments():
    for kind, shape in [
        (TaskKind.FUNCTION, "shape=box"),
        (TaskKind.EXECUTABLE, "shape=box3d"),
        (TaskKind.BLOCK, "shape=tab"),
    ]:
        assert shape in viz.to_dot(make_graph(1, kind=kind))
    assert "cluster_G0" in viz.to_dot(make_graph(1, kind=TaskKind.BLOCK))
    assert 'label="@engine"' in viz.to_dot(make_graph(1, kind=TaskKind.BLOCK))
    with pytest.raises(ValueError, match="rankdir"):
        viz.to_dot(make_graph(1), rankdir="XX")
    with pytest.raises(ValueError, match="format"):
        viz.visualize(make_graph(1), "out.bmpx")
    assert "rankdir=LR" in viz.to_dot(make_graph(1), rankdir="LR")
    assert viz.backend_colour("gpu") == viz.backend_colour("gpu")


async def test_to_mermaid_structure(mixed):
    flow, handles, _ = mixed
    text = flow.graph.to_mermaid(rankdir="LR")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(1 for ln in lines if ln.strip().startswith("subgraph")) == 2
    assert sum(1 for ln in lines if ln.strip() == "end") == 2
    assert sum(1 for ln in lines if "-->" in ln) == 6
    assert sum(1 for ln in lines if '{{"summarize' in ln) == 2  # prompts are hexagons
    assert sum(1 for ln in lines if '("load' in ln) == 2
    plan_text = viz.to_mermaid(flow.compile())
    assert plan_text.count("subgraph") == len(flow.compile().partitions)


def test_mermaid_escapes():
    g = Graph([Node("k.1", 'a "b" <c> #d', TaskKind.FUNCTION, print, (), {}, (), TaskOptions())])
    text = viz.to_mermaid(g)
    assert 'n0("a #quot;b#quot; #lt;c#gt; #35;d (1)")' in text


def test_100k_nodes_is_fast():
    g = make_graph(100_000)
    start = time.perf_counter()
    src = viz.to_dot(g)
    mer = viz.to_mermaid(g)
    assert time.perf_counter() - start < 5
    assert src.count(" -> ") == 99_999
    assert mer.count("-->") == 99_999
