"""sdgraph's engine: the graph model, validation, planning, execution and workflow files.

Pure Python on networkx; it imports neither Qt nor torch, so the headless runner, the canvas and the
tests all share it without pulling in either.
"""

from graph_engine.cache import ResultCache
from graph_engine.context import Cancelled, CancelToken, ExecutionContext, InputError
from graph_engine.executor import Executor, NodeError, RunResult
from graph_engine.model import Graph, GraphEvent, Group, Link, Node, NodeMode
from graph_engine.node_spec import (
    Boolean,
    Combo,
    Float,
    Input,
    Int,
    NodeOutput,
    NodeRegistry,
    NodeSpec,
    Output,
    Socket,
    String,
    node,
)
from graph_engine.plan import Plan, make_plan
from graph_engine.serialization import WorkflowFormatError
from graph_engine.validation import InvalidGraph, Problem, Verdict, can_connect, validate

__all__ = [
    "Boolean",
    "CancelToken",
    "Cancelled",
    "Combo",
    "ExecutionContext",
    "Executor",
    "Float",
    "Graph",
    "GraphEvent",
    "Group",
    "Input",
    "InputError",
    "Int",
    "InvalidGraph",
    "Link",
    "Node",
    "NodeError",
    "NodeMode",
    "NodeOutput",
    "NodeRegistry",
    "NodeSpec",
    "Output",
    "Plan",
    "Problem",
    "ResultCache",
    "RunResult",
    "Socket",
    "String",
    "Verdict",
    "WorkflowFormatError",
    "can_connect",
    "make_plan",
    "node",
    "validate",
]
