"""`sdgraph serve`: ComfyUI's HTTP and WebSocket API in front of sdgraph's engine.

ComfyUI's API is what other programs speak (its web front-end, the Krita plugin, scripts, bots), so
sdgraph serves the same routes and messages with the same JSON shapes: prompts in ComfyUI's API
format, one queue and one executor shared by every client, progress and previews over `/ws`.

The modules, each small: `app` (assembly, safety, start/stop), `routes` (HTTP handlers), `prompts`
(API prompt → graph, validation errors in ComfyUI's shape), `queue` (the queue and in-memory history),
`worker` (the thread that runs prompts), `messages` (engine events → WebSocket messages), `websocket`
(who hears what), `files` (`/view` and uploads kept inside their folders), `object_info` (node specs
described as ComfyUI describes nodes), `catalog` (models, embeddings, system stats), `recording`
(finished runs into the editor's History).

aiohttp is an optional extra (`pip install sdgraph[server]`); nothing outside this package imports it,
and `graph_engine` never does.
"""

from app.server.app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
