"""ComfyClient against the simulated ComfyUI: the happy path and every way a job can go wrong."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy.client import ComfyClient, OutputImage, QueueState
from comfy.errors import (
    ComfyError,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnavailable,
    ComfyUnhealthy,
)
from comfy.simulator import SimulatedComfy
from tests.comfy.conftest import (
    fast_client,
    invert_workflow,
    post_to_comfy,
    run_prompt,
    txt2img_workflow,
    watch_log,
)


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def pixel(data: bytes) -> Any:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))


async def test_run_follows_to_success_and_downloads_every_image(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    progress: list[tuple[str, float, float]] = []
    result = await run_prompt(client, invert_workflow(), lambda *p: progress.append(p))
    assert result.status == "success" and result.error is None
    assert [(i.node_id, i.filename, i.subfolder, i.type) for i in result.images] == [
        ("3", "c_00001_.png", "curator/run-3/step-1-base", "output"),
        ("3", "c_00002_.png", "curator/run-3/step-1-base", "output"),
    ]
    for image in result.images:
        assert pixel(await client.download(image)) == (255, 255, 0)
    assert progress == [(n, v, 1.0) for n in ("1", "2", "3") for v in (0.0, 1.0)]
    assert await client.history(result.prompt_id) == result


async def test_async_progress_callbacks_and_sampler_steps(client: ComfyClient) -> None:
    seen: list[tuple[str, float, float]] = []

    async def on_progress(node: str, value: float, top: float) -> None:
        await asyncio.sleep(0)
        seen.append((node, value, top))

    result = await run_prompt(client, txt2img_workflow(steps=4), on_progress)
    assert result.status == "success"
    assert [(v, t) for n, v, t in seen if n == "3"] == [(0.0, 1.0)] + [
        (float(s), 4.0) for s in range(1, 5)]


async def test_a_failing_progress_callback_does_not_fail_the_job(
    client: ComfyClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(node: str, value: float, top: float) -> None:
        raise RuntimeError("discord is down")

    with caplog.at_level(logging.ERROR, logger="comfy.client"):
        result = await run_prompt(client, invert_workflow(), broken)
    assert result.status == "success"
    assert "progress callback failed" in caplog.text


async def test_many_fast_prompts_are_never_lost(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=0, root=tmp_path) as sim, fast_client(sim.url) as client:
        # distinct prompts: identical ones would all be answered with the first one's image
        results = await asyncio.gather(
            *(run_prompt(client, invert_workflow(f"curator/p{i}", batch=1)) for i in range(8)))
    assert [r.status for r in results] == ["success"] * 8
    assert len({r.images[0].filename for r in results}) == 8


async def test_a_prompt_that_ended_before_anyone_listened_is_read_from_history(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    pid = await client.submit(invert_workflow())
    async with asyncio.timeout(5):
        await sim.wait_idle()
    async with fast_client(sim.url) as restarted:  # a new process, another client id
        result = await restarted.follow(pid)
    assert result.status == "success" and len(result.images) == 2


async def test_the_caller_may_choose_the_prompt_id(client: ComfyClient) -> None:
    result = await run_prompt(client, invert_workflow(), prompt_id="job-42-attempt-1")
    assert result.prompt_id == "job-42-attempt-1" and result.status == "success"


async def test_socket_dropped_mid_prompt_completes_via_history(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.duration = 0.2
    sim.drop_websockets_mid_prompt(refuse_reconnect=True)
    async with asyncio.timeout(5):
        result = await run_prompt(client, invert_workflow())
    assert result.status == "success" and len(result.images) == 2
    assert sim.timings[-1].status == "success"


async def test_socket_dropped_and_reopened_still_completes(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.duration = 0.2
    sim.drop_websockets_mid_prompt(refuse_reconnect=False)
    with watch_log() as log:
        async with asyncio.timeout(5):
            result = await run_prompt(client, invert_workflow())
        assert result.status == "success"
        async with asyncio.timeout(5):  # the first socket, then the one after the drop
            await log.wait_for(f"websocket to {sim.url} is up", times=2)
    assert client.connected


async def test_a_socket_that_never_opens_falls_back_to_polling(sim: SimulatedComfy) -> None:
    sim.refuse_websockets()
    async with fast_client(sim.url) as client, asyncio.timeout(5):
        assert await client.connect() is False
        result = await run_prompt(client, invert_workflow())
    assert result.status == "success" and len(result.images) == 2


async def test_server_down_raises_unavailable_with_the_url_after_retries(
    sim: SimulatedComfy, client: ComfyClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = sim.url
    await sim.go_down()
    with caplog.at_level(logging.INFO, logger="comfy.client"), pytest.raises(
        ComfyUnavailable
    ) as caught:
        await client.submit(invert_workflow())
    assert str(caught.value) == f"ComfyUI at {url} is not reachable: connection refused"
    assert caught.value.url == url
    assert caplog.text.count("retrying") == 2  # three attempts in all
    for call in (client.queue(), client.history("x"), client.system_stats()):
        with pytest.raises(ComfyUnavailable):
            await call


async def test_5xx_is_retried_then_reported_as_unhealthy(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.fail_requests(2, status=503)
    assert await client.queue() == QueueState([], [])
    sim.fail_requests(10, status=502)
    with pytest.raises(ComfyUnhealthy) as caught:
        await client.system_stats()
    assert str(caught.value).endswith("GET /system_stats failed: HTTP 502: simulated server error")
    assert sim._http_faults == 7  # exactly three attempts
    sim.fail_requests(0)


async def test_a_submit_whose_answer_was_lost_is_not_queued_twice(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.fail_requests(1, status=500, after_handling=True)
    pid = await client.submit(invert_workflow())
    result = await client.follow(pid)
    assert result.status == "success"
    async with asyncio.timeout(5):
        await sim.wait_idle()
    assert [t.prompt_id for t in sim.timings] == [pid]


async def test_server_coming_back_within_the_retries(sim: SimulatedComfy) -> None:
    await sim.go_down()
    async with fast_client(sim.url, retry_attempts=20, retry_max_wait=0.05) as client:
        with watch_log() as log:
            submitting = asyncio.create_task(client.submit(invert_workflow()))
            async with asyncio.timeout(5):
                await log.wait_for("retrying", times=3)
        assert not submitting.done()
        await sim.come_up()
        async with asyncio.timeout(5):
            result = await client.follow(await submitting)
    assert result.status == "success"


async def test_a_network_outage_mid_prompt_is_ridden_out(sim: SimulatedComfy) -> None:
    sim.duration = 0.3
    async with fast_client(sim.url, retry_attempts=30, retry_max_wait=0.05) as client:
        running = asyncio.create_task(run_prompt(client, invert_workflow()))
        async with asyncio.timeout(5):
            await sim.wait_running()
        await sim.go_down()
        async with asyncio.timeout(5):
            await sim.wait_idle()  # the prompt ends while the server is unreachable
        await sim.come_up()
        async with asyncio.timeout(5):
            result = await running
    assert result.status == "success" and len(result.images) == 2


async def test_a_crash_that_loses_the_prompt_ends_it_as_an_error(sim: SimulatedComfy) -> None:
    sim.duration = 0.5
    async with fast_client(sim.url, retry_attempts=30, retry_max_wait=0.05) as client:
        pid = await client.submit(invert_workflow())
        heard = asyncio.Event()
        following = asyncio.create_task(client.follow(pid, lambda *_: heard.set()))
        async with asyncio.timeout(5):
            await heard.wait()  # the follower hears the prompt run
        await sim.go_down(crash=True)
        await sim.come_up()
        async with asyncio.timeout(5):
            result = await following
    assert result.status == "lost"
    assert result.error == (f"ComfyUI at {sim.url} no longer knows prompt {pid} "
                            "(it was deleted from the queue, or the server restarted)")


@pytest.mark.parametrize(
    ("workflow", "sentence"),
    [
        (txt2img_workflow(ckpt="sdxl.safetensors"),
         "checkpoint 'sdxl.safetensors' is not installed on this ComfyUI"),
        ({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                      "filename_prefix": "c"}}},
         "node 1 LoadImage: image 'x.png' is not in the input folder"),
        ({"1": {"class_type": "Foo", "inputs": {}}},
         "node type 'Foo' is not installed on this ComfyUI"),
        ({"1": invert_workflow()["1"]}, "the workflow has no output node"),
    ],
)
async def test_rejections_are_readable(
    client: ComfyClient, workflow: dict[str, Any], sentence: str
) -> None:
    with pytest.raises(ComfyRejected) as caught:
        await client.submit(workflow)
    assert str(caught.value) == sentence
    assert caught.value.raw["node_errors"] is not None


async def test_a_400_is_never_retried(sim: SimulatedComfy, client: ComfyClient) -> None:
    sim.reject_next_submit({"error": {"type": "x", "message": "No.", "details": "",
                                      "extra_info": {}}, "node_errors": {}})
    with pytest.raises(ComfyRejected, match=r"^No\.$"):
        await client.submit(invert_workflow())
    # the rejection was consumed once
    assert (await run_prompt(client, invert_workflow())).status == "success"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({}, "node 2 (ImageScaleBy): ValueError: height and width must be > 0"),
        ({"message": "CUDA out of memory", "node_id": "1"},
         "node 1 (EmptyImage): RuntimeError: CUDA out of memory"),
    ],
)
async def test_runtime_errors_are_one_readable_line(
    sim: SimulatedComfy, client: ComfyClient, fault: dict[str, Any], message: str
) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageScaleBy", "inputs": {
            "image": ["1", 0], "upscale_method": "lanczos",
            "scale_by": 0.01 if not fault else 1.0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e"}},
    }
    if fault:
        sim.fail_next_prompt(**fault)
    result = await run_prompt(client, workflow)
    assert (result.status, result.error, result.images) == ("error", message, [])


async def test_deleting_a_pending_prompt_and_interrupting_the_running_one(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.duration = 3.0
    first = await client.submit(invert_workflow(), prompt_id="first")
    second = await client.submit(invert_workflow(), prompt_id="second")
    async with asyncio.timeout(5):
        assert await sim.wait_running() == first
    assert await client.queue() == QueueState(running=[first], pending=[second])
    await post_to_comfy(sim.url, "/queue", {"delete": [second]})
    assert await client.queue() == QueueState(running=[first], pending=[])
    await post_to_comfy(sim.url, "/interrupt", {"prompt_id": first})
    # It stops where the next node starts (1 s in), well before the 3 s the prompt would take.
    async with asyncio.timeout(2):
        result = await client.follow(first)
    assert result.status == "interrupted"
    assert result.error is not None and result.error.startswith("interrupted at node")
    assert await client.history(second) is None
    assert await client.queue() == QueueState([], [])
    follow_deleted = await client.follow(second)
    assert follow_deleted.status == "lost" and "no longer knows" in str(follow_deleted.error)


async def test_interrupt_names_the_prompt_so_another_one_is_not_stopped(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.duration = 0.2
    pid = await client.submit(invert_workflow())
    await post_to_comfy(sim.url, "/interrupt", {"prompt_id": "some-other-prompt"})
    assert (await client.follow(pid)).status == "success"


async def test_upload_then_load_image_round_trip(sim: SimulatedComfy, client: ComfyClient) -> None:
    name = await client.upload_image(png((200, 0, 0)), "parent.png", subfolder="curator")
    assert name == "curator/parent.png"
    renamed = await client.upload_image(png((0, 0, 200)), "parent.png", subfolder="curator",
                                        overwrite=False)
    assert renamed == "curator/parent (1).png"
    assert await client.upload_image(png((1, 1, 1)), "top.png") == "top.png"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                    "filename_prefix": "run/child"}},
    }
    result = await run_prompt(client, workflow)
    assert result.status == "success"
    data = await client.download(result.images[0])
    assert Image.open(io.BytesIO(data)).size == (8, 6)
    assert pixel(data) == (55, 255, 255)
    with pytest.raises(ValueError):
        await client.upload_image(b"x", "../escape.png")


async def test_download_of_a_missing_file(client: ComfyClient) -> None:
    with pytest.raises(ComfyProtocolError) as caught:
        await client.download(OutputImage("9", "gone.png", "run", "output"))
    assert caught.value.status == 404
    assert "run/gone.png" in str(caught.value)


async def test_system_stats_and_url(sim: SimulatedComfy, client: ComfyClient) -> None:
    stats = await client.system_stats()
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert client.url == sim.url
    assert ComfyClient(sim.url + "/").url == sim.url
    with pytest.raises(ValueError):
        ComfyClient("ftp://nowhere")


async def test_closing_the_client_wakes_a_follower(sim: SimulatedComfy) -> None:
    sim.duration = 2.0
    client = fast_client(sim.url)
    pid = await client.submit(invert_workflow())
    heard = asyncio.Event()
    following = asyncio.create_task(client.follow(pid, lambda *_: heard.set()))
    async with asyncio.timeout(5):
        await heard.wait()  # the follower is waiting for the prompt's frames
    await client.close()
    with pytest.raises(ComfyError, match="closed"):
        async with asyncio.timeout(1):
            await following
    with pytest.raises(ComfyError, match="closed"):
        await client.queue()


async def test_delete_history_forgets_those_prompts_and_keeps_their_files(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    kept = await run_prompt(client, invert_workflow(batch=1))
    gone = await run_prompt(client, invert_workflow(batch=2))
    await client.delete_history([gone.prompt_id, "never-queued"])
    await client.delete_history([])  # nothing to ask
    assert await client.history(gone.prompt_id) is None
    assert (await client.history(kept.prompt_id)) is not None
    assert len(await client.download(gone.images[0])) > 0  # ComfyUI keeps the output


async def test_delete_history_on_a_comfyui_that_is_not_there(tmp_path: Path) -> None:
    async with fast_client("http://127.0.0.1:9") as client:
        with pytest.raises(ComfyUnavailable):
            await client.delete_history(["p-1"])
