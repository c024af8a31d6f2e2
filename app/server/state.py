"""What every request handler shares: the node registry, the one executor, the queue, the sockets."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from app.server.files import Folders
from app.server.queue import PromptQueue
from app.server.websocket import Hub
from app.server.worker import PromptWorker
from graph_engine import NodeRegistry


@dataclass
class ServerState:
    registry: NodeRegistry
    queue: PromptQueue
    worker: PromptWorker
    hub: Hub
    folders: Folders


STATE = web.AppKey("sdgraph_state", ServerState)
