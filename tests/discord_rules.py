"""What Discord refuses, for the fakes in `tests/helpers.py`.

Each check names the page of Discord's API documentation it follows. A breach is recorded (the
`discord_rules` fixture in conftest fails the test that caused it) and raised to the bot as the
`discord.HTTPException` Discord would answer, so the bot's own handling runs as it would in
production.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import discord

DOCS = "https://discord.com/developers/docs"
MESSAGE = f"{DOCS}/resources/message#create-message"
EMBED_LIMITS = f"{DOCS}/resources/message#embed-object-embed-limits"
COMPONENTS = f"{DOCS}/components/reference"
CHANNEL = f"{DOCS}/resources/channel#channel-object-channel-structure"
UPLOADS = f"{DOCS}/reference#uploading-files"
RESPONDING = f"{DOCS}/interactions/receiving-and-responding#responding-to-an-interaction"
FOLLOWUPS = f"{DOCS}/interactions/receiving-and-responding#followup-messages"
EPHEMERAL = f"{DOCS}/interactions/receiving-and-responding#interaction-callback-data-structure"
AUTOCOMPLETE = (
    f"{DOCS}/interactions/receiving-and-responding"
    "#interaction-response-object-autocomplete"
)
COMMANDS = (
    f"{DOCS}/interactions/application-commands"
    "#application-command-object-application-command-option-structure"
)

# resources/message#create-message: "content: Message contents (up to 2000 characters)";
# up to 10 embeds and 10 attachments a message.
CONTENT_MAX = 2000
EMBEDS_MAX = 10
FILES_MAX = 10
# resources/message#embed-object-embed-limits
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_AUTHOR_MAX = 256
EMBEDS_TOTAL_MAX = 6000
# components/reference: 5 action rows; 5 buttons or 1 select a row; custom_id up to 100
# characters, unique in a message; button label up to 80; select options 1-25, each label,
# value and description up to 100; placeholder up to 150.
ROWS_MAX = 5
ROW_BUTTONS_MAX = 5
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
SELECT_OPTIONS_MAX = 25
SELECT_TEXT_MAX = 100
PLACEHOLDER_MAX = 150
# resources/channel#channel-object-channel-structure: name 1-100, topic 0-1024 (text channel).
CHANNEL_NAME_MAX = 100
CHANNEL_TOPIC_MAX = 1024
# reference#uploading-files: a file may be up to 10 MiB unless the server is boosted.
FILE_MAX_BYTES = 10 * 1024 * 1024
# interactions/receiving-and-responding: an initial response within 3 seconds, exactly once;
# the token (follow-ups, edits of the original) lasts 15 minutes.
RESPONSE_WITHIN_S = 3.0
TOKEN_VALID_S = 15 * 60
# ...#interaction-response-object-autocomplete: up to 25 choices.
# application-commands: choice name 1-100, string value up to 100; option name 1-32,
# description 1-100; string option max_length up to 6000; 25 options a command.
CHOICES_MAX = 25
CHOICE_NAME_MAX = 100
CHOICE_VALUE_MAX = 100
COMMAND_NAME_MAX = 32
DESCRIPTION_MAX = 100
OPTIONS_MAX = 25
STRING_OPTION_MAX = 6000


@dataclass(frozen=True)
class Breach:
    rule: str
    docs: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.docs})"


BREACHES: list[Breach] = []


class _Response:
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


def refuse(rule: str, docs: str, *, status: int = 400, code: int = 50035) -> discord.HTTPException:
    """Record the breach and build the error Discord answers with."""
    BREACHES.append(Breach(rule, docs))
    response = _Response(status, {400: "Bad Request", 404: "Not Found"}.get(status, "Error"))
    body = {"code": code, "message": rule}
    if status == 404:
        return discord.NotFound(response, body)  # type: ignore[arg-type]
    return discord.HTTPException(response, body)  # type: ignore[arg-type]


def _too_long(what: str, text: str | None, limit: int) -> list[str]:
    if text is not None and len(text) > limit:
        return [f"{what} is {len(text)} characters; Discord allows {limit}"]
    return []


def message_problems(sent: dict[str, Any], *, editing: bool = False) -> list[tuple[str, str]]:
    """Every rule a message payload (send or edit keyword arguments) breaks."""
    problems: list[tuple[str, str]] = []
    content = sent.get("content")
    if content is not None:
        content = str(content)
        problems += [(p, MESSAGE) for p in _too_long("content", content, CONTENT_MAX)]
    embeds = list(sent.get("embeds") or [])
    if sent.get("embed") is not None:
        embeds.append(sent["embed"])
    problems += [(p, EMBED_LIMITS) for p in embed_problems(embeds)]
    files = list(sent.get("files") or [])
    if sent.get("file") is not None:
        files.append(sent["file"])
    if len(files) > FILES_MAX:
        problems.append((f"{len(files)} files; Discord allows {FILES_MAX}", MESSAGE))
    for file in files:
        size = _file_size(file)
        if size > FILE_MAX_BYTES:
            problems.append((f"file {file.filename} is {size} bytes", UPLOADS))
    view = sent.get("view")
    if view is not None:
        problems += [(p, COMPONENTS) for p in component_problems(view.to_components())]
    if not editing and not (content or embeds or files or view is not None):
        problems.append(("an empty message", MESSAGE))
    return problems


def _file_size(file: discord.File) -> int:
    fp = file.fp
    if isinstance(fp, io.BytesIO):
        return len(fp.getbuffer())
    here = fp.tell()
    fp.seek(0, io.SEEK_END)
    size = fp.tell()
    fp.seek(here)
    return size


def embed_problems(embeds: Iterable[discord.Embed]) -> list[str]:
    problems: list[str] = []
    embeds = list(embeds)
    if len(embeds) > EMBEDS_MAX:
        problems.append(f"{len(embeds)} embeds; Discord allows {EMBEDS_MAX}")
    total = 0
    for embed in embeds:
        data = embed.to_dict()
        title = data.get("title")
        description = data.get("description")
        footer = (data.get("footer") or {}).get("text")
        author = (data.get("author") or {}).get("name")
        fields = data.get("fields") or []
        problems += _too_long("embed title", title, EMBED_TITLE_MAX)
        problems += _too_long("embed description", description, EMBED_DESCRIPTION_MAX)
        problems += _too_long("embed footer", footer, EMBED_FOOTER_MAX)
        problems += _too_long("embed author", author, EMBED_AUTHOR_MAX)
        if len(fields) > EMBED_FIELDS_MAX:
            problems.append(f"{len(fields)} embed fields; Discord allows {EMBED_FIELDS_MAX}")
        for f in fields:
            if not f.get("name") or not f.get("value"):
                problems.append("an embed field without a name or a value")
            problems += _too_long("embed field name", f.get("name"), EMBED_FIELD_NAME_MAX)
            problems += _too_long("embed field value", f.get("value"), EMBED_FIELD_VALUE_MAX)
            total += len(f.get("name") or "") + len(f.get("value") or "")
        total += sum(len(t or "") for t in (title, description, footer, author))
    if total > EMBEDS_TOTAL_MAX:
        problems.append(f"embeds hold {total} characters in all; Discord allows {EMBEDS_TOTAL_MAX}")
    return problems


def component_problems(rows: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(rows) > ROWS_MAX:
        problems.append(f"{len(rows)} action rows; Discord allows {ROWS_MAX}")
    ids: list[str] = []
    for row in rows:
        items = row.get("components", [])
        selects = [c for c in items if c.get("type") != discord.ComponentType.button.value]
        if (selects and len(items) > 1) or len(items) > ROW_BUTTONS_MAX:
            problems.append(f"an action row of {len(items)} components")
        for c in items:
            cid = c.get("custom_id")
            if cid is not None:
                ids.append(cid)
                problems += _too_long("custom_id", cid, CUSTOM_ID_MAX)
            problems += _too_long("button label", c.get("label"), BUTTON_LABEL_MAX)
            problems += _too_long("placeholder", c.get("placeholder"), PLACEHOLDER_MAX)
            options = c.get("options")
            if options is not None:
                if not 1 <= len(options) <= SELECT_OPTIONS_MAX:
                    problems.append(f"a select of {len(options)} options")
                for o in options:
                    for key in ("label", "value", "description"):
                        problems += _too_long(f"option {key}", o.get(key), SELECT_TEXT_MAX)
    if len(ids) != len(set(ids)):
        problems.append("custom_ids repeat within one message")
    return problems


def channel_problems(name: str | None = None, topic: str | None = None) -> list[str]:
    problems: list[str] = []
    if name is not None and not 1 <= len(name) <= CHANNEL_NAME_MAX:
        problems.append(f"channel name of {len(name)} characters; Discord allows 1-100")
    problems += _too_long("channel topic", topic, CHANNEL_TOPIC_MAX)
    return problems


def check_message(sent: dict[str, Any], *, editing: bool = False) -> None:
    for rule, docs in message_problems(sent, editing=editing):
        raise refuse(rule, docs)


def check_channel(name: str | None = None, topic: str | None = None) -> None:
    for rule in channel_problems(name, topic):
        raise refuse(rule, CHANNEL)


def choice_problems(choices: list[Any]) -> list[str]:
    problems: list[str] = []
    if len(choices) > CHOICES_MAX:
        problems.append(f"{len(choices)} autocomplete choices; Discord allows {CHOICES_MAX}")
    for choice in choices:
        if not 1 <= len(choice.name) <= CHOICE_NAME_MAX:
            problems.append(f"a choice name of {len(choice.name)} characters")
        if isinstance(choice.value, str) and len(choice.value) > CHOICE_VALUE_MAX:
            problems.append(f"a choice value of {len(choice.value)} characters")
    return problems
