"""The shard dependency graph (networkx) and the linear schedule codegen renders from it.

Nodes (tuples, each with attribute `kind`):
  ("embed",)                 compute: token, position and type embeddings
  ("header", L)              load, preloaded at construction: layer L's unsplittable parameters
  ("load", L, i, part)       load of shard i's `part` piece of layer L at its planned bits
  ("compute", L, part)       compute: the block `part` of layer L over its kept shards, then its join
  ("output",)                the last hidden state
Edges: data dependencies. Loads feed the compute node of their (layer, part); compute nodes form a
chain in model order. The parts of a layer come from `sticc.model.sharding.PARTS`; nothing here knows
which family the model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import networkx as nx

from sticc.base.schema import PARTS
from sticc.ir.plan import Plan, by_position
from sticc.model.store import Store


class NodeKind(Enum):
    LOAD = "load"
    COMPUTE = "compute"


def build_graph(store: Store, plan: Plan) -> nx.DiGraph:
    graph = nx.DiGraph()
    choices = by_position(plan.shards)
    graph.add_node(("embed",), kind=NodeKind.COMPUTE, op="embed")
    previous = ("embed",)
    for layer in range(store.spec.layers):
        header = ("header", layer)
        graph.add_node(header, kind=NodeKind.LOAD, layer=layer, preload=True, nbytes=store.layer_headers[layer].nbytes)
        for part in PARTS:
            compute = ("compute", layer, part)
            graph.add_node(compute, kind=NodeKind.COMPUTE, op=part, layer=layer, part=part)
            graph.add_edge(previous, compute)
            graph.add_edge(header, compute)
            for index in range(store.shards_per_layer):
                choice = choices[(layer, index)]
                if not choice.bits:
                    continue
                version = store.version(layer, index, part, choice.bits)
                load = ("load", layer, index, part)
                graph.add_node(
                    load, kind=NodeKind.LOAD, layer=layer, index=index, part=part, bits=choice.bits,
                    preload=choice.preload, nbytes=version.layout.nbytes,
                )
                graph.add_edge(load, compute)
            previous = compute
    graph.add_node(("output",), kind=NodeKind.COMPUTE, op="output")
    graph.add_edge(previous, ("output",))
    return graph


@dataclass(frozen=True)
class LoadStep:
    node: tuple
    layer: int
    index: int
    part: str
    bits: int
    preload: bool


@dataclass(frozen=True)
class ComputeStep:
    node: tuple
    layer: int
    part: str
    loads: tuple[LoadStep, ...]  # in consumption order


def linear_schedule(graph: nx.DiGraph) -> tuple[ComputeStep, ...]:
    """Compute steps of the block nodes in dependency order, each with the loads it consumes.

    The IO thread issues loads in exactly this order, so a bounded pool never holds a piece that
    compute needs later while compute waits for one that cannot be loaded.
    """
    steps = []
    for node in nx.topological_sort(graph):
        data = graph.nodes[node]
        if data["kind"] is not NodeKind.COMPUTE or node[0] != "compute":
            continue
        loads = sorted(
            (pred for pred in graph.predecessors(node) if pred[0] == "load"), key=lambda pred: pred[2]
        )
        steps.append(ComputeStep(
            node, data["layer"], data["part"],
            tuple(LoadStep(p, p[1], p[2], p[3], graph.nodes[p]["bits"], graph.nodes[p]["preload"]) for p in loads),
        ))
    order = [(s.layer, PARTS.index(s.part)) for s in steps]
    assert order == sorted(order), "compute nodes must form a chain in model order"
    return tuple(steps)
