"""`comfy-curator run`: check everything a person could have set wrong, then start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import aiohttp
import discord

from bot.app import CuratorBot
from bot.config import REQUIRED_BY_RUN, ConfigError, Settings, require
from comfy.client import ComfyClient
from comfy.errors import ComfyError
from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from scheduler.process import Scheduler
from scheduler.storage import write_atomically

log = logging.getLogger(__name__)


async def check_workers(urls: list[str]) -> None:
    """Stop start-up on a COMFY_URL that does not answer: most often a typo or a port."""
    for url in urls:
        async with ComfyClient(url, retry_attempts=2, retry_wait=0.5) as client:
            try:
                await client.system_stats()
            except ComfyError as err:
                raise ConfigError(
                    f"COMFY_URL: {err}. Start ComfyUI there (e.g. `python main.py --listen`) "
                    "or fix COMFY_URL."
                ) from err


def check_data_dir(data_dir: Path) -> None:
    """Stop start-up on a DATA_DIR that cannot take an image, before anything waits on it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = write_atomically(data_dir, f".write-test-{os.getpid()}", b"ok")
        probe.unlink(missing_ok=True)
    except OSError as err:
        raise ConfigError(
            f"DATA_DIR {data_dir.absolute()} cannot take files ({err.strerror or err}): make "
            "it a folder this user can write to, or set DATA_DIR elsewhere."
        ) from err


async def run_bot(settings: Settings) -> None:
    require(settings, *REQUIRED_BY_RUN)
    assert settings.discord_token is not None
    await asyncio.to_thread(check_data_dir, settings.data_dir)
    await upgrade_database(settings.database_url)
    await check_workers(settings.comfy_urls)
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    scheduler = Scheduler(sessions, settings.comfy_urls, settings.data_dir,
                          tick_seconds=settings.tick_seconds)
    bot = CuratorBot(settings, sessions, scheduler)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # not on Windows
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(bot.close()))
    try:
        await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure as err:
        raise ConfigError(
            "DISCORD_TOKEN was refused by Discord: copy the bot token again from the developer "
            "portal (Bot → Reset Token)."
        ) from err
    except discord.PrivilegedIntentsRequired as err:
        raise ConfigError(f"Discord refused an intent: {err}") from err
    except (aiohttp.ClientConnectionError, discord.GatewayNotFound) as err:
        raise ConfigError(
            f"Discord cannot be reached ({err}): check this machine's internet connection, "
            "DNS, proxy or firewall (the bot needs discord.com and gateway.discord.gg); "
            "then start again."
        ) from err
    finally:
        if not bot.is_closed():
            await bot.close()  # a job in flight keeps running on ComfyUI; the next start takes it
        await engine.dispose()
        log.info("stopped")
