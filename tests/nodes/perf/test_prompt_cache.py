"""A prompt is encoded once: changing only the seed re-runs the sampler, decode and output, never the
text encoders (issue 15: "encode once per prompt")."""

from __future__ import annotations

import pytest

from graph_engine import Executor, ResultCache, make_plan
from graph_engine.events import Event, NodeCached, NodeFinished
from nodes import builtin_registry
from nodes.diffusion import runtime
from nodes.diffusion.model_manager import ModelManager
from tests.support.graphs import txt2img_graph


@pytest.fixture
def fresh_manager(monkeypatch) -> ModelManager:
    mgr = ModelManager()
    monkeypatch.setattr(runtime, "_manager", mgr)
    return mgr


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_a_seed_change_does_not_encode_the_prompt_again(tiny_models, tmp_path, fresh_manager, precision) -> None:
    registry = builtin_registry()
    g, ids = txt2img_graph("tiny_sd1.safetensors", size=32, output="PreviewImage", seed=1, steps=2)
    executor = Executor(registry, output_dir=tmp_path, cache=ResultCache(), settings={"precision": precision})
    plan = make_plan(g, registry)
    clip_outputs: list[object] = []

    def grab(event: Event) -> None:
        if isinstance(event, NodeFinished) and event.node_id == ids["ckpt"]:
            clip_outputs.append(executor.cache.get(executor.signatures(plan)[event.node_id]).outputs[1])

    assert executor.execute(plan, on_event=grab).status == "done"
    (clip,) = clip_outputs
    forwards: list[int] = []
    hooks = [e.register_forward_hook(lambda *_: forwards.append(1)) for e in clip.text_encoders]
    try:
        g.set_value(ids["ks"], "seed", 2)
        events: list[Event] = []
        result = executor.run(g, on_event=events.append)
    finally:
        for hook in hooks:
            hook.remove()
    assert result.status == "done", result.error
    assert sorted(result.executed) == sorted([ids["ks"], ids["dec"], ids["out"]])
    cached = {e.node_id for e in events if isinstance(e, NodeCached)}
    assert {ids["pos"], ids["neg"], ids["ckpt"]} <= cached
    assert forwards == []  # the text encoders did not run at all
    g.set_value(ids["pos"], "text", "a blue fox")  # a prompt change does encode (the hook can see it)
    hooks = [e.register_forward_hook(lambda *_: forwards.append(1)) for e in clip.text_encoders]
    try:
        assert executor.run(g).status == "done"
    finally:
        for hook in hooks:
            hook.remove()
    assert forwards
