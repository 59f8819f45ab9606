"""/gallery renders the step's contact sheet from the real database and image files."""

from __future__ import annotations

import io

from PIL import Image

from cogs.gallery import Gallery
from orchestration.approvals import approve_step
from orchestration.overview import gallery_page, set_run_channel
from orchestration.ratings import reject_candidate
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import fake_interaction, invoke, make_bot, replies


async def test_gallery_page_orders_and_badges(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s)
        p = await add_candidate(s, run, 1)
        ids = [await add_candidate(s, run, 2, p, elo=e) for e in (1000, 1100, 900, 1050)]
        await reject_candidate(s, run, ids[1], "alice")
        await approve_step(s, run, 2, 2, "alice")
        page = await gallery_page(s, run, None, 1)
    assert page.step == 2 and page.pages == 1
    assert [i.id for i in page.items] == [ids[3], ids[0], ids[2], ids[1]]
    assert [i.advancing for i in page.items] == [True, True, False, False]
    assert page.items[-1].status.value == "rejected"


async def test_gallery_command_posts_a_contact_sheet(session_factory, tmp_path):
    data = tmp_path / "data"
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s, name="Shoot")
        for _ in range(2):
            await add_candidate(s, run, 1)  # both point at fake/<run>/1.png
        (data / "fake" / str(run)).mkdir(parents=True)
        Image.new("RGB", (64, 64), "red").save(data / f"fake/{run}/1.png")
        await set_run_channel(s, run, 555)
    bot = make_bot(session_factory, data)
    interaction = fake_interaction(bot, channel_id=555)
    await invoke(Gallery.gallery, Gallery(bot), interaction)
    assert interaction.response.deferred
    call = interaction.followup.send.await_args
    assert "Shoot: step 1 (step 1), page 1 of 1" in call.args[0]
    sheet = Image.open(io.BytesIO(call.kwargs["file"].fp.read()))
    assert sheet.width > 0


async def test_gallery_unknown_step(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
    bot = make_bot(session_factory, tmp_path)
    interaction = fake_interaction(bot)
    await invoke(Gallery.gallery, Gallery(bot), interaction, step=5, run=run)
    assert "there is no step 5" in replies(interaction)[-1]
