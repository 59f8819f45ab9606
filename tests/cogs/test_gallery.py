"""/gallery renders the step's contact sheet from the real database and image files."""

from __future__ import annotations

import io
import logging
import random

import discord
from discord.components import SelectMenu
from PIL import Image

from app.refits import ratings_settled
from bot.app import UNEXPECTED
from cogs import gallery as gallery_cog
from cogs.gallery import CandidateSelect, Gallery, full_size, gallery_view, select_id
from db.models import ImageCandidate
from orchestration.confidence import top_k_confidence
from orchestration.overview import gallery_page
from orchestration.runs import RunSettings
from tests.committed import approve_step, record_vote, reject_candidate, set_run_channel
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import fake_interaction, fake_member, invoke, make_bot, replies


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
    assert call.args[0].endswith("\nTop 3: certain (all 2 are in the top 3).")  # k 3, 2 here
    sheet = Image.open(io.BytesIO(call.kwargs["file"].fp.read()))
    assert sheet.width > 0


async def voted_step(session_factory, tmp_path, results):
    """Run "Shoot" with k 2 and five candidates at step 2; `results` are (winner, loser)
    indexes, each voted by a different person through the product."""
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s, name="Shoot", settings=RunSettings(top_k=2))
        p = await add_candidate(s, run, 1)
        ids = [await add_candidate(s, run, 2, p) for _ in range(5)]
        for i, (w, lo) in enumerate(results):
            await record_vote(s, run, ids[w], ids[lo], f"v{i}")
        await ratings_settled()
        confidence = await top_k_confidence(s, run, 2, 2)
    return run, ids, confidence


async def posted_text(session_factory, tmp_path, run, step):
    bot = make_bot(session_factory, tmp_path)
    interaction = fake_interaction(bot)
    await invoke(Gallery.gallery, Gallery(bot), interaction, step=step, run=run)
    return interaction.followup.send.await_args.args[0]


async def test_few_votes_show_how_unsure_the_top_k_is_and_warn(session_factory, tmp_path):
    run, _, confidence = await voted_step(session_factory, tmp_path, [(0, 1), (2, 3)])
    assert confidence.few_votes_warning is not None
    text = await posted_text(session_factory, tmp_path, run, 2)
    lines = text.split("\n")
    assert lines[0].startswith("Shoot: step 2 (step 2), page 1 of 1 · ")
    assert lines[1:] == [
        f"Top 2: {confidence.label} to be the true top 2.",
        f"⚠️ {confidence.few_votes_warning}",
    ]
    assert "Few votes so far: this top 2 is only" in lines[2]


async def test_many_consistent_votes_show_a_sure_top_k_without_warning(session_factory, tmp_path):
    won = [(t, r) for t in (3, 4) for r in (0, 1, 2) for _ in range(8)]
    lost = [(r, t) for t in (3, 4) for r in (0, 1, 2)]
    run, _, confidence = await voted_step(session_factory, tmp_path, won + lost)
    assert confidence.label.startswith("very likely") and confidence.few_votes_warning is None
    text = await posted_text(session_factory, tmp_path, run, 2)
    assert text.split("\n")[1:] == [f"Top 2: {confidence.label} to be the true top 2."]
    assert "⚠️" not in text


async def test_no_top_k_line_for_a_single_candidate(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
        await add_candidate(s, run, 1)
    text = await posted_text(session_factory, tmp_path, run, 1)
    assert "\n" not in text and "Top " not in text


async def test_gallery_unknown_step(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
    bot = make_bot(session_factory, tmp_path)
    interaction = fake_interaction(bot)
    await invoke(Gallery.gallery, Gallery(bot), interaction, step=5, run=run)
    assert "there is no step 5" in replies(interaction)[-1]
    # The sheet would have been public; the refusal is not: the "thinking…" message goes first.
    assert interaction.response.deferred_with == {"thinking": True}
    interaction.delete_original_response.assert_awaited_once()
    assert interaction.followup.send.await_args.kwargs["ephemeral"] is True


async def family(session_factory, data, *, image=True):
    """Three generations in one run (step 1 → 2 → 3), each with its own seed and file."""
    async with session_factory() as s:
        await make_pipeline(s, data.parent, steps=3)
        run = await make_run(s, name="Shoot")
        ids: list[int] = []
        parent = None
        for step, (seed, elo) in enumerate([(123, 1010), (456, 1020), (789, 1043)], start=1):
            cid = await add_candidate(s, run, step, parent, elo=elo)
            row = await s.get_one(ImageCandidate, cid)
            row.seed, row.image_path = seed, f"runs/{run}/{cid}.png"
            await s.commit()
            if image:
                (data / "runs" / str(run)).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (96, 64), (step * 60, 0, 0)).save(data / row.image_path)
            ids.append(cid)
            parent = cid
        await approve_step(s, run, 2, 1, "alice")
    return run, ids


async def choose(bot, custom_id, value, *, base=None, user=None):
    """What discord.py does when a persistent select of a message is used: match its id, build
    the item from it (`from_custom_id`, as after a restart), give it the chosen value, call it."""
    match = CandidateSelect.__discord_ui_compiled_template__.fullmatch(custom_id)
    assert match is not None
    interaction = fake_interaction(bot, user=user)
    item = await CandidateSelect.from_custom_id(interaction, base, match)
    item._refresh_state(
        interaction, {"custom_id": custom_id, "component_type": 3, "values": [str(value)]}
    )
    await item.callback(interaction)
    return interaction


def sent(interaction):
    """The one follow-up the person got: its text and its keyword arguments."""
    call = interaction.followup.send.await_args
    return (call.args[0] if call.args else call.kwargs["content"]), call.kwargs


async def test_gallery_message_carries_a_persistent_menu_of_the_page(session_factory, tmp_path):
    data = tmp_path / "data"
    run, ids = await family(session_factory, data)
    async with session_factory() as s:
        leaf_sibling = await add_candidate(s, run, 3, ids[1], elo=1100)
    bot = make_bot(session_factory, data)
    interaction = fake_interaction(bot)
    await invoke(Gallery.gallery, Gallery(bot), interaction, run=run)
    view = interaction.followup.send.await_args.kwargs["view"]
    assert view.timeout is None and view.is_persistent()
    [menu] = view.children
    assert isinstance(menu, CandidateSelect) and menu.run_id == run
    assert menu.custom_id == f"cc:gal:{run}" and len(menu.custom_id) <= 100
    assert [(o.label, o.value) for o in menu.item.options] == [
        (f"#{leaf_sibling} · rank 1 · Elo 1100", str(leaf_sibling)),
        (f"#{ids[2]} · rank 2 · Elo 1043", str(ids[2])),
    ]


async def test_no_menu_without_candidates(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
    bot = make_bot(session_factory, tmp_path)
    interaction = fake_interaction(bot)
    await invoke(Gallery.gallery, Gallery(bot), interaction, run=run)
    assert "no candidates yet" in replies(interaction)[-1]
    assert "view" not in interaction.followup.send.await_args.kwargs


async def test_choosing_a_candidate_sends_it_full_size_with_its_lineage(session_factory, tmp_path):
    data = tmp_path / "data"
    run, (root, middle, leaf) = await family(session_factory, data)
    bot = make_bot(session_factory, data)
    stranger = fake_member(curator=False)  # looking changes nothing: no role needed
    interaction = await choose(bot, select_id(run), leaf, user=stranger)
    assert interaction.response.deferred_with == {"ephemeral": True, "thinking": True}
    text, kwargs = sent(interaction)
    assert kwargs["ephemeral"] is True
    assert f"#{leaf} · step 3 · rank 1 · Elo 1043 · 0 votes · ○ not decided yet" in text
    assert (
        f"step 1 #{root} (seed 123, Elo 1010) → step 2 #{middle} (seed 456, Elo 1020) → "
        f"step 3 #{leaf} (seed 789, Elo 1043)"
    ) in text
    file = kwargs["file"]
    assert file.filename == f"{leaf}.png"
    assert file.fp.read() == (data / f"runs/{run}/{leaf}.png").read_bytes()  # as it is


async def test_a_menu_built_fresh_from_its_message_after_a_restart_works(session_factory, tmp_path):
    data = tmp_path / "data"
    run, (_, middle, _) = await family(session_factory, data)
    async with session_factory() as s:
        page = await gallery_page(s, run, 2, 1)
    posted = gallery_view(page).children[0].to_component_dict()  # what the message holds
    base = discord.ui.Select.from_component(SelectMenu(posted))  # what discord.py reads back
    fresh_bot = make_bot(session_factory, data)  # a new process on the same database
    interaction = await choose(fresh_bot, posted["custom_id"], middle, base=base)
    text, kwargs = sent(interaction)
    assert f"#{middle} · step 2 · rank 1" in text and "▲ advancing" in text
    assert kwargs["file"].filename == f"{middle}.png"


async def test_a_candidate_of_another_run_is_refused(session_factory, tmp_path):
    data = tmp_path / "data"
    run, _ = await family(session_factory, data)
    async with session_factory() as s:
        other = await make_run(s, name="Other")
        theirs = await add_candidate(s, other, 1)
    interaction = await choose(make_bot(session_factory, data), select_id(run), theirs)
    text, kwargs = sent(interaction)
    assert text == f"Candidate #{theirs} is not in run #{run}."
    assert kwargs == {"ephemeral": True}


async def test_a_missing_image_is_said_plainly(session_factory, tmp_path):
    data = tmp_path / "data"
    run, (_, _, leaf) = await family(session_factory, data, image=False)
    interaction = await choose(make_bot(session_factory, data), select_id(run), leaf)
    text, kwargs = sent(interaction)
    assert f"The image file of #{leaf} is missing (runs/{run}/{leaf}.png)." in text
    assert "Lineage: step 1" in text  # the rest is still worth seeing
    assert kwargs == {"ephemeral": True}


async def test_a_rejected_candidate_says_who_rejected_it(session_factory, tmp_path):
    from orchestration.jobs import reject_unreadable_parent

    data = tmp_path / "data"
    run, (root, middle, _) = await family(session_factory, data)
    async with session_factory() as s:
        await reject_candidate(s, run, middle, "4242")
        await reject_unreadable_parent(s, root, "scheduler: image file is not an image")
        await s.commit()
    bot = make_bot(session_factory, data)
    by_person, _ = sent(await choose(bot, select_id(run), middle))
    by_bot, _ = sent(await choose(bot, select_id(run), root))
    assert "✕ rejected" in by_person and "Rejected by <@4242>." in by_person
    assert "Rejected by the scheduler: image file is not an image." in by_bot


async def test_an_unexpected_failure_is_logged_and_answered(
    session_factory, tmp_path, caplog, monkeypatch
):
    data = tmp_path / "data"
    run, (_, _, leaf) = await family(session_factory, data)

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(gallery_cog, "detail_text", broken)
    with caplog.at_level(logging.ERROR):
        interaction = await choose(make_bot(session_factory, data), select_id(run), leaf)
    assert sent(interaction) == (UNEXPECTED, {"ephemeral": True})
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_only_a_file_over_the_limit_is_re_encoded(tmp_path):
    noise = random.Random(7).randbytes(256 * 256 * 3)
    path = tmp_path / "big.png"
    Image.frombytes("RGB", (256, 256), noise).save(path)
    assert full_size(path, path.stat().st_size) == (path.read_bytes(), "big.png")
    data, name = full_size(path, 60_000)
    assert len(data) <= 60_000 and name == "big.jpg"
    assert Image.open(io.BytesIO(data)).format == "JPEG"


async def test_the_menu_is_registered_with_the_cog(session_factory, tmp_path):
    bot = make_bot(session_factory, tmp_path)
    await bot.load_extension("cogs.gallery")
    pattern = CandidateSelect.__discord_ui_compiled_template__
    assert pattern in bot._connection._view_store._dynamic_items
