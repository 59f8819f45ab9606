"""/runs, /run start, /run delete, /complete and /resume."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from app.deletion import delete_run, plan_run_deletion
from app.pipelines import list_pipelines
from app.runs import channel_opened, complete_run, list_runs, resume_run, start_run, which_run
from bot.app import MESSAGE_MAX, CuratorBot, changed, defer_public
from bot.deletion import deleted_text, deletion_text
from bot.permissions import curator_only
from bot.questions import Question
from cogs.common import AnyRunOption, RunOption, run_ref
from orchestration.deletion import RunContents
from orchestration.errors import InvalidInput
from orchestration.overview import RunOverview
from orchestration.runs import RunCreated
from orchestration.states import RunStatus, SelectionOrder
from orchestration.text import NAME_MAX, clip, plural, quoted

log = logging.getLogger(__name__)

RUNS_PER_PAGE = 10
# Prompts are not shown back in Discord, so they may be as long as Discord allows an option.
PROMPT_MAX = 6000
VARIABLES_MAX = 1000


def parse_variables(text: str | None) -> dict[str, str]:
    """`style=golden hour; lens=85mm` → {"style": "golden hour", "lens": "85mm"}."""
    values: dict[str, str] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(
                f"{quoted(part)} is not name=value; separate variables with ';', "
                "e.g. `style=golden hour; lens=85mm`."
            )
        values[name.strip()] = value.strip()
    return values


def step_badges(run: RunOverview) -> str:
    parts = []
    for s in run.steps:
        badge = "✅" if s.approved else ("⏳" if s.awaiting_approval else "·")
        parts.append(f"{s.step} {s.name}: {s.candidates} {badge}")
    return " | ".join(parts)


EMBED_TOTAL = 6000  # Discord's limit on all the text of a message's embeds
FIELD_NAME = 256
FIELD_VALUE = 1024


def runs_embed(runs: list[RunOverview], page: int) -> discord.Embed:
    pages = max(1, -(-len(runs) // RUNS_PER_PAGE))
    page = min(max(page, 1), pages)
    embed = discord.Embed(title="Runs", colour=discord.Colour.blurple())
    embed.set_footer(text=f"page {page} of {pages} · ✅ approved · ⏳ awaiting approval")
    if not runs:
        embed.description = "No runs yet. Start one with `/run start`."
    shown = runs[(page - 1) * RUNS_PER_PAGE : page * RUNS_PER_PAGE]
    names = [clip(f"#{r.id} {r.name} ({r.pipeline})", FIELD_NAME) for r in shown]
    room = EMBED_TOTAL - len(embed.title or "") - len(embed.footer.text or "")
    room -= sum(map(len, names))
    per_field = min(FIELD_VALUE, room // max(1, len(shown)))
    for run, name in zip(shown, names, strict=True):
        if run.status is RunStatus.completed:
            state = "completed"
        elif run.held_reason:
            state = clip(f"on hold: {run.held_reason}", 200)
        elif any(s.awaiting_approval for s in run.steps):
            state = "awaiting approval"
        else:
            state = "running" if run.has_work else "no work left"
        channel = f" · <#{run.channel_id}>" if run.channel_id else ""
        value = (
            f"{state} · {run.completion:.0%} done · {plural(run.votes, 'vote')}{channel}\n"
            f"{step_badges(run)}"
        )
        embed.add_field(name=name, value=clip(value, per_field), inline=False)
    return embed


class Runs(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    run_group = app_commands.Group(name="run", description="Start or delete a run")

    @app_commands.command(name="runs", description="Every run: status, steps, votes")
    @app_commands.describe(page="Page of the list (10 runs a page)")
    async def runs(self, interaction: discord.Interaction[Any], page: int = 1) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        overviews = await list_runs(self.bot.app)
        await interaction.followup.send(embed=runs_embed(overviews, page), ephemeral=True)

    @run_group.command(name="start", description="Start a run of a pipeline in its own channel")
    @app_commands.describe(
        pipeline="The pipeline to run",
        name="A name for this session, e.g. Morning gym shoot",
        prompt="The prompt",
        negative_prompt="What to avoid (optional)",
        variables="Other variables the pipeline needs: name=value; name=value",
        n="Children per parent (and base images)",
        order="Fill the lowest step first, or finish the highest first",
        gates="Ask for approval before a step grows (default on)",
    )
    @curator_only()
    async def start(
        self,
        interaction: discord.Interaction[Any],
        pipeline: app_commands.Range[str, 1, NAME_MAX],
        name: app_commands.Range[str, 1, NAME_MAX],
        prompt: app_commands.Range[str, 1, PROMPT_MAX],
        negative_prompt: app_commands.Range[str, 1, PROMPT_MAX] | None = None,
        variables: app_commands.Range[str, 1, VARIABLES_MAX] | None = None,
        n: app_commands.Range[int, 1, 20] | None = None,
        order: SelectionOrder | None = None,
        gates: bool | None = None,
    ) -> None:
        await defer_public(interaction)
        values: dict[str, Any] = {**parse_variables(variables), "prompt": prompt}
        if negative_prompt is not None:
            values["negative_prompt"] = negative_prompt
        defaults = self.bot.settings.run_settings()
        settings = type(defaults)(
            max_children=n or defaults.max_children,
            target_leaves=defaults.target_leaves,
            order=order or defaults.order,
            gates=defaults.gates if gates is None else gates,
            budget=defaults.budget,
            top_k=defaults.top_k,
        )
        created = await start_run(
            self.bot.app, pipeline, name, values, settings, created_by=str(interaction.user.id),
            wake=False,
        )
        changed(interaction, f"run #{created.run_id} {quoted(created.name)} was started")
        channel, problem = await self._open_channel(interaction, created)
        await channel_opened(self.bot.app, created.run_id, channel.id if channel else None)
        where = f" in {channel.mention}" if channel is not None else ""
        text = (
            f"Started run #{created.run_id} “{created.name}” on {created.pipeline} "
            f"({created.steps} steps){where}."
        )
        if problem is None:
            text += " New candidates will arrive there as pairs to vote on."
        else:
            text += f"\n⚠️ {problem} Meanwhile `/vote run:{created.run_id}` gives pairs to vote on."
        await interaction.followup.send(text)

    @start.autocomplete("pipeline")
    async def _pipelines(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        pipelines = await list_pipelines(self.bot.app)
        return [
            app_commands.Choice(name=p.name, value=p.name)
            for p in pipelines
            if current.lower() in p.name.lower()
        ][:25]

    async def _open_channel(
        self, interaction: discord.Interaction[Any], created: RunCreated
    ) -> tuple[discord.TextChannel | None, str | None]:
        """The run's channel, or why there is none (the run stands either way)."""
        guild = interaction.guild
        if guild is None:
            return None, None
        category = None
        category_id = self.bot.settings.run_category_id
        if category_id is not None:
            found = guild.get_channel(category_id)
            category = found if isinstance(found, discord.CategoryChannel) else None
        try:
            channel = await guild.create_text_channel(
                created.folder[:100],
                category=category,
                topic=f"comfy-curator run #{created.run_id}: {created.name}",
            )
        except discord.HTTPException as err:
            log.warning("run %d: could not create its channel: %s", created.run_id, err)
            need = " The bot needs the Manage Channels permission (docs/discord.md)."
            return None, (
                f"I could not create the run's channel ({err.text or err.status})."
                + (need if isinstance(err, discord.Forbidden) else "")
            )
        return channel, None

    @run_group.command(
        name="delete", description="Delete a run for good: its images, votes and jobs"
    )
    @app_commands.describe(run="The run (default: this channel's run)")
    @curator_only()
    async def delete(
        self, interaction: discord.Interaction[Any], run: AnyRunOption | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data_dir = self.bot.settings.data_dir
        plan = await plan_run_deletion(self.bot.app, run_ref(interaction, run), data_dir)
        question = Question("run-delete", interaction.user.id)
        await interaction.followup.send(
            clip(deletion_text(data_dir, plan), MESSAGE_MAX), view=question.view(),
            ephemeral=True,
        )
        if not await question.answer():
            await interaction.edit_original_response(content="Not deleted.", view=None)
            return
        done = await delete_run(self.bot.app, plan.run_id, data_dir)
        changed(interaction, f"run #{plan.run_id} was deleted")
        await interaction.edit_original_response(
            content=clip(deleted_text(data_dir, done), MESSAGE_MAX), view=None
        )
        contents = done.deletion.contents
        if contents is not None and contents.channel_id is not None:
            await self._say_deleted(contents, interaction.user.mention)

    async def _say_deleted(self, contents: RunContents, by: str) -> None:
        """A line in the run's channel, which stays: its pairs no longer take votes."""
        channel = self.bot.get_channel(contents.channel_id or 0)
        if isinstance(channel, discord.TextChannel):
            try:
                await channel.send(
                    f"🗑️ Run “{contents.name}” was deleted by {by}: its "
                    "images, votes and jobs are gone, and the pairs above no longer take "
                    "votes. This channel stays until someone deletes it."
                )
            except discord.HTTPException as err:  # the run is deleted all the same
                log.warning("run %d: could not tell its channel it was deleted: %s",
                            contents.run_id, err)

    @app_commands.command(name="complete", description="Complete a run: no more jobs or votes")
    @app_commands.describe(run="The run (default: this channel's run)")
    @curator_only()
    async def complete(
        self, interaction: discord.Interaction[Any], run: RunOption | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        run_id = await which_run(self.bot.app, run_ref(interaction, run))
        question = Question("complete", interaction.user.id)
        await interaction.followup.send(
            f"Complete run #{run_id}? No new jobs, votes or approvals afterwards.",
            view=question.view(),
            ephemeral=True,
        )
        if not await question.answer():
            await interaction.edit_original_response(content="Not completed.", view=None)
            return
        done = await complete_run(self.bot.app, run_id)
        changed(interaction, f"run #{done.id} {quoted(done.name)} was completed")
        await interaction.edit_original_response(
            content=f"Run #{done.id} “{done.name}” is completed.", view=None
        )
        if done.channel_id is not None:
            channel = self.bot.get_channel(done.channel_id)
            if isinstance(channel, discord.TextChannel):
                try:
                    await channel.send(
                        f"✅ Run “{done.name}” was completed by {interaction.user.mention}."
                    )
                    await channel.edit(name=f"done-{channel.name}"[:100])
                except discord.HTTPException as err:  # the run is completed all the same
                    log.warning("run %d: could not mark its channel done: %s", done.id, err)
                    await interaction.edit_original_response(
                        content=f"Run #{done.id} “{done.name}” is completed, but I could not "
                        f"mark its channel done ({err.text or err.status}).",
                        view=None,
                    )

    @app_commands.command(name="resume", description="Lift a run's hold so it gets jobs again")
    @app_commands.describe(run="The run (default: this channel's run)")
    @curator_only()
    async def resume(
        self, interaction: discord.Interaction[Any], run: RunOption | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        resumed = await resume_run(self.bot.app, run_ref(interaction, run))
        changed(interaction, f"run #{resumed.id} {quoted(resumed.name)} was resumed")
        await interaction.followup.send(
            f"Run #{resumed.id} “{resumed.name}” resumed.", ephemeral=True
        )



async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Runs(bot))
