"""What a ComfyUI client gets for bad prompts, file names that try to leave their folder, uploads that
are not images, and the node, model and machine descriptions it builds its UI from."""

from __future__ import annotations

import asyncio
import io
import json
import os

import aiohttp

from tests.server.support import CKPT, post_prompt, txt2img, write_png


def _call(coro_fn):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await coro_fn(session)

    return asyncio.run(main())


def _no_traceback(body):
    assert "Traceback" not in json.dumps(body)


def test_unknown_node_is_refused_naming_it(served):
    prompt = txt2img()
    prompt["10"] = {"class_type": "MadeUpNode", "inputs": {"image": ["8", 0]}, "_meta": {"title": "Mystery"}}
    status, body = _call(lambda s: post_prompt(s, served.url, prompt))
    assert status == 400
    assert body["error"]["type"] == "missing_node_type" and "Mystery" in body["error"]["message"]
    assert body["error"]["extra_info"]["class_type"] == "MadeUpNode"
    assert body["node_errors"]["10"]["class_type"] == "MadeUpNode"
    assert body["node_errors"]["10"]["errors"][0]["type"] == "missing_node_type"


def test_missing_input_and_missing_model_in_node_errors_shape(served):
    prompt = txt2img()
    del prompt["3"]["inputs"]["model"]
    prompt["4"]["inputs"]["ckpt_name"] = "not_there.safetensors"
    status, body = _call(lambda s: post_prompt(s, served.url, prompt))
    assert status == 400, body
    _no_traceback(body)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["node_errors"]) == {"3", "4"}
    missing = body["node_errors"]["3"]
    assert missing["class_type"] == "KSampler" and missing["dependent_outputs"] == ["9"]
    (error,) = missing["errors"]
    assert set(error) == {"type", "message", "details", "extra_info"}
    assert error["type"] == "required_input_missing" and error["extra_info"]["input_name"] == "model"
    (model_error,) = body["node_errors"]["4"]["errors"]
    assert model_error["type"] == "value_not_in_list" and model_error["extra_info"]["received_value"] == (
        "not_there.safetensors"
    )
    assert CKPT in model_error["details"]  # the closest installed name, for the person who typed it


def test_bad_values_are_named_as_comfyui_names_them(served):
    prompt = txt2img()
    prompt["3"]["inputs"]["steps"] = 0
    prompt["3"]["inputs"]["sampler_name"] = "no_such_sampler"
    prompt["3"]["inputs"]["cfg"] = "high"
    status, body = _call(lambda s: post_prompt(s, served.url, prompt))
    assert status == 400
    types = {e["extra_info"]["input_name"]: e["type"] for e in body["node_errors"]["3"]["errors"]}
    assert types == {
        "steps": "value_smaller_than_min",
        "sampler_name": "value_not_in_list",
        "cfg": "invalid_input_type",
    }


def test_malformed_requests_get_json_errors(served):
    async def main(session):
        results = []
        for data in (b"{not json", b"[1, 2]", json.dumps({"prompt": "hello"}).encode(), b""):
            async with session.post(f"{served.url}/prompt", data=data) as resp:
                results.append((resp.status, await resp.json()))
        bad_link = txt2img()
        bad_link["3"]["inputs"]["model"] = ["99", 0]
        results.append(await post_prompt(session, served.url, bad_link))
        results.append(await post_prompt(session, served.url, txt2img(), client_id=["not", "a", "string"]))
        async with session.get(f"{served.url}/no/such/route") as resp:
            results.append((resp.status, await resp.json()))
        return results

    results = _call(main)
    for status, body in results[:-1]:
        assert status == 400, body
        assert set(body) == {"error", "node_errors"} and {"type", "message", "details"} <= set(body["error"])
        _no_traceback(body)
    assert [body["error"]["type"] for _s, body in results[:4]] == [
        "invalid_prompt",
        "no_prompt",
        "no_prompt",
        "invalid_prompt",
    ]
    assert "99" in results[4][1]["error"]["details"]
    assert results[-1][0] == 404 and results[-1][1]["error"]["type"] == "http_error"


def test_view_never_leaves_its_folder(served, tmp_path):
    secret = tmp_path / "secret.png"
    write_png(secret)
    (served.output / "inside.png").write_bytes(secret.read_bytes())
    link = served.output / "link.png"
    if not link.exists():
        os.symlink(secret, link)

    async def main(session):
        out = {}
        cases = {
            "ok": {"filename": "inside.png"},
            "dotdot_name": {"filename": "../secret.png"},
            "dotdot_sub": {"filename": "secret.png", "subfolder": ".."},
            "dotdot_deep": {"filename": "secret.png", "subfolder": "a/../../.."},
            "absolute_name": {"filename": str(secret)},
            "absolute_sub": {"filename": "secret.png", "subfolder": str(tmp_path)},
            "symlink_out": {"filename": "link.png"},
            "missing": {"filename": "nope.png"},
            "bad_type": {"filename": "inside.png", "type": "elsewhere"},
        }
        for name, params in cases.items():
            async with session.get(f"{served.url}/api/view", params=params) as resp:
                out[name] = (resp.status, await resp.read())
        return out

    out = _call(main)
    assert out["ok"] == (200, secret.read_bytes())
    for name in ("dotdot_name", "dotdot_sub", "dotdot_deep", "absolute_name", "absolute_sub", "bad_type"):
        assert out[name][0] == 400, name
    assert out["symlink_out"][0] == 404 and out["missing"][0] == 404
    assert all(secret.read_bytes() not in body for _status, body in out.values() if _status != 200)


def test_uploads_must_be_images_and_stay_inside(served, tmp_path):
    png = write_png(tmp_path / "a.png")
    other = write_png(tmp_path / "b.png", colour=(0, 0, 255))

    async def upload(session, data, name, **fields):
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="image/png")
        for key, value in fields.items():
            form.add_field(key, value)
        async with session.post(f"{served.url}/upload/image", data=form) as resp:
            return resp.status, await resp.json()

    async def main(session):
        return [
            await upload(session, b"#!/bin/sh\necho not an image\n", "evil.png"),
            await upload(session, png, "fox.png"),
            await upload(session, png, "fox.png"),  # the same bytes again: the same file
            await upload(session, other, "fox.png"),  # a different file: a new name
            await upload(session, other, "fox.png", overwrite="true"),
            await upload(session, png, "fox.png", subfolder="../.."),
            await upload(session, png, "fox.txt"),
            await upload(session, png, "m.png", subfolder="masks", type="input"),
            await upload(session, b"\x89PNG" + os.urandom(2 * 1024 * 1024), "big.png"),  # over --max-upload-size
        ]

    results = _call(main)
    status, body = results[0]
    assert status == 400 and "not an image" in body["error"]["message"]
    assert results[1] == (200, {"name": "fox.png", "subfolder": "", "type": "input"})
    assert results[2][1]["name"] == "fox.png"
    assert results[3][1]["name"] == "fox (1).png"
    assert results[4][1]["name"] == "fox.png" and (served.input / "fox.png").read_bytes() == other
    assert results[5][0] == 400 and results[6][0] == 400
    assert results[7] == (200, {"name": "m.png", "subfolder": "masks", "type": "input"})
    assert (served.input / "masks" / "m.png").read_bytes() == png
    assert results[8][0] == 413 and results[8][1]["error"]["type"] == "too_large"
    assert not (served.input / "evil.png").exists() and not (served.input / "big.png").exists()


def test_mask_upload_puts_the_mask_into_the_originals_alpha(served, tmp_path):
    import io

    from PIL import Image

    write_png(served.input / "photo.png", size=(8, 8))
    mask = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    mask.putpixel((0, 0), (0, 0, 0, 0))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")

    async def main(session):
        form = aiohttp.FormData()
        form.add_field("image", buffer.getvalue(), filename="photo_mask.png", content_type="image/png")
        form.add_field("original_ref", json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"}))
        async with session.post(f"{served.url}/upload/mask", data=form) as resp:
            return resp.status, await resp.json()

    status, body = _call(main)
    assert status == 200 and body["name"] == "photo_mask.png"
    with Image.open(served.input / "photo_mask.png") as result:
        assert result.size == (8, 8) and result.mode == "RGBA"
        assert result.getpixel((0, 0))[3] == 0 and result.getpixel((7, 7)) == (200, 30, 30, 255)


def test_object_info_describes_ksampler_as_comfyui_does(served):
    async def main(session):
        async with session.get(f"{served.url}/object_info") as resp:
            everything = await resp.json()
        async with session.get(f"{served.url}/api/object_info/KSampler") as resp:
            one = await resp.json()
        async with session.get(f"{served.url}/object_info/NoSuchNode") as resp:
            none = await resp.json()
        return everything, one, none

    everything, one, none = _call(main)
    assert set(one) == {"KSampler"} and everything["KSampler"] == one["KSampler"] and none == {}
    ks = one["KSampler"]
    required = ks["input"]["required"]
    assert list(required) == [
        "model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image", "denoise",
    ]  # fmt: skip
    assert ks["input_order"]["required"] == list(required)
    assert required["model"] == ["MODEL"]
    assert (
        required["steps"][0] == "INT"
        and {"default": 20, "min": 1, "max": 10000}.items() <= required["steps"][1].items()
    )
    assert required["seed"][1].get("control_after_generate") is True
    samplers = required["sampler_name"][0]
    assert isinstance(samplers, list) and "euler" in samplers and "dpmpp_2m" in samplers
    assert ks["output"] == ["LATENT"] and ks["output_is_list"] == [False] and ks["output_name"] == ["LATENT"]
    assert ks["name"] == "KSampler" and ks["category"] == "sampling" and ks["output_node"] is False
    assert CKPT in everything["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert everything["SaveImage"]["output_node"] is True
    assert everything["CLIPTextEncode"]["display_name"] == "CLIP Text Encode (Prompt)"  # ComfyUI's, not "Encode Prompt"
    assert everything["LoadImage"]["input"]["required"]["image"][1].get("image_upload") is True
    assert "Note" not in everything and "Reroute" not in everything  # frontend-only, as in ComfyUI


def test_models_embeddings_and_system_stats(served):
    async def main(session):
        out = {}
        for path in ("/models", "/models/checkpoints", "/api/models/unet", "/models/nowhere", "/embeddings",
                     "/system_stats"):  # fmt: skip
            async with session.get(f"{served.url}{path}") as resp:
                out[path] = (resp.status, await resp.json())
        return out

    out = _call(main)
    assert "checkpoints" in out["/models"][1] and "loras" in out["/models"][1]
    assert out["/models/checkpoints"] == (200, [CKPT])
    assert out["/api/models/unet"] == (200, [])
    assert out["/models/nowhere"][0] == 404
    assert out["/embeddings"] == (200, ["my_style"])
    stats = out["/system_stats"][1]
    assert stats["devices"][0]["type"] == "cpu" and stats["system"]["ram_total"] > 0


def test_an_uploaded_image_runs_through_load_image_and_its_preview_is_viewable(served, tmp_path):
    from tests.server.support import finished, receive_until

    png = write_png(tmp_path / "up.png", size=(24, 16), colour=(10, 200, 90))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }

    async def main(session):
        form = aiohttp.FormData()
        form.add_field("image", png, filename="cat.png", content_type="image/png")
        form.add_field("overwrite", "true")
        async with session.post(f"{served.url}/upload/image", data=form) as resp:
            assert resp.status == 200
        async with session.ws_connect(f"{served.url}/ws?clientId=pia") as ws:
            status, body = await post_prompt(session, served.url, prompt, client_id="pia")
            assert status == 200, body
            messages = await receive_until(ws, finished(body["prompt_id"]))
        (executed,) = [m["data"] for m in messages if isinstance(m, dict) and m["type"] == "executed"]
        (ref,) = executed["output"]["images"]
        async with session.get(f"{served.url}/view", params=ref) as resp:
            return ref, resp.status, await resp.read()

    ref, status, data = _call(main)
    from PIL import Image

    assert ref["type"] == "temp" and status == 200
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (24, 16) and img.convert("RGB").getpixel((3, 3)) == (10, 200, 90)


def test_broken_upload_forms_are_400_not_500(served):
    async def main(session):
        out = []
        for content_type, data in (
            ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage"),
            ("multipart/form-data", b"no boundary"),
            ("application/json", b"{}"),
        ):
            headers = {"Content-Type": content_type}
            async with session.post(f"{served.url}/upload/image", data=data, headers=headers) as r:
                out.append((r.status, await r.json()))
        return out

    for status, body in _call(main):
        assert status == 400 and "'image'" in body["error"]["message"]


def test_a_node_failing_at_run_time_is_reported_as_execution_error(served):
    from tests.server.support import finished, receive_until

    served.input.mkdir(exist_ok=True)
    (served.input / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # listed, but unreadable
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }

    async def main(session):
        async with session.ws_connect(f"{served.url}/ws?clientId=erin") as ws:
            status, body = await post_prompt(session, served.url, prompt, client_id="erin")
            assert status == 200, body
            messages = await receive_until(ws, finished(body["prompt_id"]))
        async with session.get(f"{served.url}/history/{body['prompt_id']}") as resp:
            return messages, (await resp.json())[body["prompt_id"]]

    messages, entry = _call(main)
    (error,) = [m["data"] for m in messages if isinstance(m, dict) and m["type"] == "execution_error"]
    assert error["node_id"] == "1" and error["node_type"] == "LoadImage" and error["exception_message"]
    assert {"executed", "exception_type", "traceback", "current_inputs"} <= set(error)
    assert entry["status"]["status_str"] == "error"
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_error"


def test_a_broken_output_is_left_out_and_the_valid_one_still_runs(served):
    """ComfyUI's rule: the prompt is queued with the outputs that validate; node_errors names the rest."""
    prompt = txt2img(prefix="partial")
    prompt["10"] = {"class_type": "PreviewImage", "inputs": {}}
    status, body = _call(lambda s: post_prompt(s, served.url, prompt))
    assert status == 200, body
    assert body["node_errors"]["10"]["errors"][0]["type"] == "required_input_missing"
    assert body["node_errors"]["10"]["dependent_outputs"] == ["10"]

    async def queued(session):
        for _ in range(200):
            async with session.get(f"{served.url}/history/{body['prompt_id']}") as resp:
                entry = (await resp.json()).get(body["prompt_id"])
            if entry is not None:
                return entry
            await asyncio.sleep(0.1)
        raise AssertionError("the prompt did not finish")

    entry = _call(queued)
    assert entry["prompt"][4] == ["9"] and entry["status"]["status_str"] == "success"
    assert list(entry["outputs"]) == ["9"]
