"""ComfyClient against a simulated ComfyUI that answers badly, late, or about other prompts."""

from __future__ import annotations

import asyncio
import logging

import pytest

from comfy.client import ComfyClient
from comfy.errors import ComfyProtocolError, ComfyUnavailable, ComfyUnhealthy
from comfy.simulator import SimulatedComfy
from tests.comfy.conftest import (
    fast_client,
    invert_workflow,
    post_to_comfy,
    run_prompt,
    watch_log,
)

# What aiohttp (so ComfyUI) answers when a handler raises, e.g. on a body that is not JSON.
AIOHTTP_500 = "500 Internal Server Error\n\nServer got itself in trouble"


def left(sim: SimulatedComfy, rule: int = 0) -> int | None:
    """How many matches the fault rule still has: counts the requests that reached it."""
    return sim._faults[rule].times


# -- 1. what ComfyUI said ------------------------------------------------------------------------


async def test_a_5xx_after_retries_is_unhealthy_and_quotes_comfyui(
    sim: SimulatedComfy, client: ComfyClient
) -> None:
    sim.fault("/system_stats", status=502, body="Bad Gateway\n  upstream is restarting",
              times=10)
    with pytest.raises(ComfyUnhealthy) as caught:
        await client.system_stats()
    assert str(caught.value) == (f"ComfyUI at {sim.url} answers, but GET /system_stats failed: "
                                 "HTTP 502: Bad Gateway upstream is restarting")
    assert (caught.value.status, caught.value.what) == (502, "GET /system_stats")
    assert left(sim) == 7  # three attempts, as configured


async def test_comfyui_text_is_one_short_line(sim: SimulatedComfy, client: ComfyClient) -> None:
    sim.fault("/queue", method="GET", status=503, body="x" * 150 + "\n\n" + "y" * 150,
              times=None)
    with pytest.raises(ComfyUnhealthy) as caught:
        await client.queue()
    assert "\n" not in str(caught.value)
    assert len(caught.value.detail) <= 200 and caught.value.detail.endswith("…")
    assert caught.value.detail.startswith("x" * 150 + " y")


async def test_a_prompt_comfyui_fails_on_is_retried_once_and_its_answer_reported(
    sim: SimulatedComfy,
) -> None:
    sim.fault("/prompt", method="POST", status=500, body=AIOHTTP_500, times=10)
    async with fast_client(sim.url, retry_attempts=4) as client:
        with pytest.raises(ComfyUnhealthy) as caught:
            await client.submit(invert_workflow())
    assert caught.value.status == 500 and caught.value.what == "POST /prompt"
    assert "HTTP 500: 500 Internal Server Error Server got itself in trouble" in str(caught.value)
    assert "ComfyUI's log" in str(caught.value)
    assert left(sim) == 8  # the same body fails the same way: one resend, not four
    assert sim.pending == [] and sim.timings == []


async def test_a_request_without_an_answer_in_time_is_unhealthy_not_unreachable(
    sim: SimulatedComfy,
) -> None:
    sim.fault("/queue", method="GET", status=None, delay=1.0, times=None)
    async with fast_client(sim.url, request_timeout=0.2) as client:
        with pytest.raises(ComfyUnhealthy) as caught:
            await client.queue()
    assert str(caught.value) == (f"ComfyUI at {sim.url} answers, but GET /queue failed: "
                                 "no answer within 0.2 s")
    assert caught.value.status is None and caught.value.detail == "no answer within 0.2 s"


async def test_a_server_that_is_gone_is_still_unavailable(sim: SimulatedComfy) -> None:
    await sim.go_down()
    async with fast_client(sim.url) as client:
        with pytest.raises(ComfyUnavailable, match="connection refused"):
            await client.history("x")


# -- 2. one prompt id, posted once ---------------------------------------------------------------


async def test_a_submit_slower_than_the_request_timeout_gets_its_own_timeout(
    sim: SimulatedComfy,
) -> None:
    sim.fault("/prompt", method="POST", status=None, delay=0.5, times=None)
    async with fast_client(sim.url, request_timeout=0.2, submit_timeout=5.0) as client:
        pid = await client.submit(invert_workflow())
        assert (await client.follow(pid)).status == "success"
    assert [t.prompt_id for t in sim.timings] == [pid]


async def test_a_submit_past_its_timeout_is_awaited_not_posted_again(
    sim: SimulatedComfy, caplog: pytest.LogCaptureFixture
) -> None:
    sim.fault("/prompt", method="POST", status=None, delay=0.6)  # handled late, once
    async with fast_client(sim.url, submit_timeout=0.2, submit_grace=5.0) as client:
        with caplog.at_level(logging.INFO, logger="comfy.client"):
            pid = await client.submit(invert_workflow())
        assert (await client.follow(pid)).status == "success"
        async with asyncio.timeout(5):
            await sim.wait_idle()
    assert [t.prompt_id for t in sim.timings] == [pid]
    assert "not sending it again" in caplog.text


# -- 3. frames belong to their prompt ------------------------------------------------------------


async def test_an_end_frame_that_names_no_prompt_does_not_end_one(sim: SimulatedComfy) -> None:
    sim.duration = 0.6
    async with fast_client(sim.url, history_grace=0.1) as client:
        running = asyncio.create_task(run_prompt(client, invert_workflow()))
        async with asyncio.timeout(5):
            await sim.wait_running()
        await sim.send_frame("executing", {"node": None})
        await sim.send_frame("execution_success", {"timestamp": 1})
        await sim.send_frame("executing", {"node": None, "prompt_id": "another-prompt"})
        async with asyncio.timeout(5):
            result = await running
    assert result.status == "success" and len(result.saved_images) == 2


# -- 4. silence ----------------------------------------------------------------------------------


async def test_a_socket_silent_about_a_prompt_is_noticed_and_history_polled(
    sim: SimulatedComfy, caplog: pytest.LogCaptureFixture
) -> None:
    sim.duration = 0.5
    async with fast_client(sim.url) as submitter, fast_client(
        sim.url, idle_poll_interval=15.0, silence_after=0.2
    ) as follower:
        pid = await submitter.submit(invert_workflow())  # its frames go to the submitter
        assert await follower.connect()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.DEBUG, logger="comfy.client"):
            async with asyncio.timeout(5):  # far less than the 15 s idle poll
                result = await follower.follow(pid)
        assert result.status == "success"
        assert loop.time() - started < 3
    silence = [r for r in caplog.records if "no websocket frame about" in r.getMessage()]
    assert len(silence) == 1 and silence[0].levelno == logging.INFO
    assert pid in silence[0].getMessage() and sim.url in silence[0].getMessage()


async def test_frames_that_resume_end_the_fallback(sim: SimulatedComfy) -> None:
    sim.duration = 3.0
    async with fast_client(sim.url) as submitter, fast_client(
        sim.url, idle_poll_interval=15.0, silence_after=0.1
    ) as follower:
        pid = await submitter.submit(invert_workflow())
        assert await follower.connect()
        with watch_log() as log:
            following = asyncio.create_task(follower.follow(pid))
            async with asyncio.timeout(5):
                await log.wait_for("no websocket frame about")
            await sim.send_frame("progress", {"value": 1, "max": 4, "node": "1",
                                              "prompt_id": pid}, client_id=follower.client_id)
            async with asyncio.timeout(5):
                await log.wait_for(f"frames about {pid} resumed")
            await client_cancel(submitter, pid)
            async with asyncio.timeout(5):
                result = await following
    assert result.status == "interrupted"


async def client_cancel(client: ComfyClient, pid: str) -> None:
    """Stop the prompt as a person at ComfyUI's page would."""
    assert pid in await client.queue()
    await post_to_comfy(client.url, "/interrupt", {"prompt_id": pid})


# -- 5. downloads --------------------------------------------------------------------------------


async def test_a_slow_download_is_not_cut_by_the_request_timeout(sim: SimulatedComfy) -> None:
    async with fast_client(sim.url, request_timeout=0.2) as client:
        result = await run_prompt(client, invert_workflow())
        sim.fault("/view", status=None, delay=0.5, times=None)
        data = await client.download(result.images[0])
    assert data.startswith(b"\x89PNG")


async def test_a_download_past_its_timeout_names_the_file_and_the_time(
    sim: SimulatedComfy,
) -> None:
    async with fast_client(sim.url, download_timeout=0.2) as client:
        result = await run_prompt(client, invert_workflow())
        sim.fault("/view", status=None, delay=1.0, times=5)
        with pytest.raises(ComfyUnhealthy) as caught:
            await client.download(result.images[0])
    assert str(caught.value) == (
        f"ComfyUI at {sim.url} answers, but GET /view curator/run-3/step-1-base/c_00001_.png "
        "failed: the download did not finish within 0.2 s")
    assert left(sim) == 4  # a download that timed out is not started over


async def test_a_file_gone_from_view_is_a_404(sim: SimulatedComfy, client: ComfyClient) -> None:
    result = await run_prompt(client, invert_workflow())
    (sim.root / "output" / "curator/run-3/step-1-base/c_00002_.png").unlink()
    with pytest.raises(ComfyProtocolError) as caught:
        await client.download(result.images[1])
    assert caught.value.status == 404
    assert str(caught.value) == (f"output file curator/run-3/step-1-base/c_00002_.png "
                                 f"is not on ComfyUI at {sim.url}")


# -- 6. uploads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (413, "Maximum request body size 1048576 exceeded,\nactual body size 2097152",
         "POST /upload/image answered HTTP 413: Maximum request body size 1048576 exceeded, "
         "actual body size 2097152"),
        (400, "", "POST /upload/image answered HTTP 400"),
    ],
)
async def test_an_upload_refused_says_the_status_and_comfyui_text(
    sim: SimulatedComfy, client: ComfyClient, status: int, body: str, message: str
) -> None:
    sim.fault("/upload/image", method="POST", status=status, body=body, times=5)
    with pytest.raises(ComfyProtocolError) as caught:
        await client.upload_image(b"\x89PNG", "parent.png", subfolder="curator")
    assert caught.value.status == status and str(caught.value) == message
    assert left(sim) == 4  # a 4xx is not retried
