"""Importing the model stack on a background thread, shared by `sdgraph run` and the window.

What the first diffusion node needs is seconds of imports that can overlap with reading the workflow
(`sdgraph run`) or with the user looking at the freshly shown window. Its own module so that neither
the CLI nor the GUI has to import the other to reach it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

NO_PRELOAD_ENV = "SDGRAPH_NO_PRELOAD"

_preloading: threading.Thread | None = None  # the latest `start_preloading` thread, for `wait_for_preloading`


def import_model_stack() -> None:
    """torch, then the diffusers/transformers classes the checkpoint loader uses.

    diffusers and transformers are lazy modules: naming the classes is what really imports them.
    Their lazy machinery is not safe to enter from two threads at once (seen here: "cannot import
    name 'AutoencoderKL' from 'diffusers'" when a node imported it while this thread was), so
    whoever runs this must be waited for (`Thread.join`) before anything else imports them.
    """
    import torch  # noqa: F401
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel  # noqa: F401


def start_preloading(target: Any = import_model_stack) -> threading.Thread | None:
    """Run ``target`` (imports) on a daemon thread, so the first run does not wait for them.

    Whatever else imports diffusers or transformers must wait for it first (`wait_for_preloading`,
    or join the returned thread). Errors are ignored here; the real import reports them. Set
    SDGRAPH_NO_PRELOAD=1 to turn it off.
    """
    if os.environ.get(NO_PRELOAD_ENV):
        return None

    def preload() -> None:
        try:
            target()
        except Exception:  # reported by the import that needs it, with its own context
            return

    global _preloading
    thread = threading.Thread(target=preload, name="sdgraph-preload", daemon=True)
    _preloading = thread
    thread.start()
    return thread


def wait_for_preloading() -> None:
    """Return once the imports `start_preloading` began are done (at once if none were started).

    Whatever imports diffusers or transformers on another thread calls this first: the window's run
    workers do, as their thread's initializer, so a run pressed while the imports are still going
    waits for them instead of entering the lazy modules beside them.
    """
    thread = _preloading
    if thread is not None and thread is not threading.current_thread():
        thread.join()
