"""XY Sweep: grid geometry and labels, cells equal single runs, prompts encoded once, progress, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from graph_engine import CancelToken, Executor, InputError
from graph_engine.events import NodeProgress, NodeStarted
from nodes import builtin_registry
from nodes.diffusion.grid import draw_grid, grid_layout
from nodes.sweep import parse_values
from tests.nodes.lab.lab_graphs import sd_base, wire_sampler

SWEEP = {
    "seed": 0,
    "steps": 2,
    "cfg": 7.0,
    "sampler_name": "euler",
    "scheduler": "normal",
    "denoise": 1.0,
    "x_input": "cfg",
    "x_values": "1, 5, 9",
    "y_input": "seed",
    "y_values": "1, 2",
}


def sweep_graph(**values):
    b = sd_base()
    sw = b.g.add_node("XYSweep", SWEEP | values).id
    wire_sampler(b, sw)
    b.g.add_link(b.ckpt, "VAE", sw, "vae", "VAE")
    return b, sw


@pytest.fixture(scope="module")
def swept(tiny_model_root, tmp_path_factory):
    import nodes.folders

    nodes.folders.configure(extra_roots=[str(tiny_model_root)])
    try:
        b, sw = sweep_graph()
        events = []
        result = Executor(builtin_registry(), output_dir=tmp_path_factory.mktemp("out")).run(
            b.g, targets=[sw], on_event=events.append
        )
        assert result.status == "done", result.error
        return b, sw, result, events
    finally:
        nodes.folders.configure()


def test_grid_size_is_cells_plus_label_margins(swept):
    _, sw, result, _ = swept
    (grid,) = result.outputs[sw]
    x_labels, y_labels = ["cfg 1", "cfg 5", "cfg 9"], ["seed 1", "seed 2"]
    lay = grid_layout(3, 2, 64, 64, x_labels, y_labels)
    assert lay.top > 0 and lay.left > 0
    assert tuple(grid.shape) == (1, lay.size[1], lay.size[0], 3)
    assert lay.size == (lay.left + 3 * 64 + 2 * lay.gap, lay.top + 2 * 64 + lay.gap)
    ui = result.ui[sw]
    assert ui["labels"] == {"x_input": "cfg", "x": x_labels, "y_input": "seed", "y": y_labels}
    assert ui["grid"]["left"] == lay.left and ui["grid"]["top"] == lay.top
    assert ui["text"] == ["x: cfg 1, cfg 5, cfg 9", "y: seed 1, seed 2"]
    pixels = grid[0].numpy()
    # The label bands hold drawn text, not a blank margin.
    assert pixels[: lay.top, lay.left :].std() > 0.01
    assert pixels[lay.top :, : lay.left].std() > 0.01


def test_prompts_are_encoded_once_for_all_cells(swept):
    b, sw, _, events = swept
    started = [e.node_id for e in events if isinstance(e, NodeStarted)]
    assert started.count(b.pos) == 1 and started.count(b.neg) == 1
    assert started.count(sw) == 1
    progress = [(e.step, e.total) for e in events if isinstance(e, NodeProgress) and e.node_id == sw]
    assert progress[-1] == (12, 12)  # 6 cells × 2 steps, one progress bar for the whole sweep
    assert [s for s, _ in progress] == sorted(s for s, _ in progress)


def test_a_cell_is_the_single_run_with_those_values(swept, tiny_models, tmp_path):
    _, sw, result, _ = swept
    (grid,) = result.outputs[sw]
    b = sd_base()
    ks = b.g.add_node("KSampler", {"seed": 2, "steps": 2, "cfg": 9.0, "sampler_name": "euler"}).id
    wire_sampler(b, ks)
    dec = b.g.add_node("VAEDecode").id
    b.g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    b.g.add_link(b.ckpt, "VAE", dec, "vae", "VAE")
    single = Executor(builtin_registry(), output_dir=tmp_path).run(b.g, targets=[dec])
    lay = grid_layout(3, 2, 64, 64, ["cfg 1", "cfg 5", "cfg 9"], ["seed 1", "seed 2"])
    x, y = lay.cell_origin(2, 1)
    cell = grid[0, y : y + 64, x : x + 64].numpy()
    expected = (single.outputs[dec][0][0].numpy() * 255).round() / 255
    assert np.abs(cell - expected).max() <= 1 / 255 + 1e-6
    # ... and the cells differ from each other: the sweep really changed the input.
    x0, _ = lay.cell_origin(0, 1)
    assert np.abs(grid[0, y : y + 64, x0 : x0 + 64].numpy() - cell).max() > 0.01


def test_cancel_stops_between_cells(tiny_models, tmp_path):
    b, sw = sweep_graph(y_input="none", x_values="1, 5, 9, 12")
    token = CancelToken()
    cells_done = []

    def on_event(e):
        if isinstance(e, NodeProgress) and e.node_id == sw and e.step == 2:
            cells_done.append(e.step)
            token.cancel()

    result = Executor(builtin_registry(), output_dir=tmp_path).run(b.g, targets=[sw], on_event=on_event, cancel=token)
    assert result.status == "cancelled"
    assert cells_done  # it had finished the first cell when asked to stop


def test_single_row_has_no_left_band():
    cells = [[np.full((16, 16, 3), v, np.uint8) for v in (0, 128, 255)]]
    grid, lay = draw_grid(cells, ["a", "b", "c"])
    assert lay.left == 0 and grid.shape == (lay.size[1], lay.size[0], 3)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cfg", "5, abc", "'abc' is not a number"),
        ("steps", "2, 0", "outside"),
        ("sampler_name", "euler, warp", "'warp' is not a sampler"),
        ("seed", "", "separated by commas"),
    ],
)
def test_bad_values_are_explained(name, text, message):
    with pytest.raises(InputError) as err:
        parse_values("x", name, text)
    assert err.value.input_id == "x_values" and message in err.value.message


def test_values_are_typed():
    assert parse_values("y", "cfg", "5, 7.5; 9") == [5.0, 7.5, 9.0]
    assert parse_values("y", "seed", "1,2") == [1, 2]
    assert parse_values("y", "scheduler", "karras, normal") == ["karras", "normal"]
