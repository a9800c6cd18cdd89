"""Bot API methods about the bot itself, updates, webhooks, queries and chats."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ._json import JsonDict, Params
from .errors import ApiError, bad_request
from .methods_messages import Handler
from .parsing import bool_param, chat_id_of, int_param, str_param
from .state import ApiState
from .webhook import WebhookConfig

_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
# The sandbox must never call out beyond this machine.
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


async def get_me(state: ApiState, params: Params) -> JsonDict:
    return state.bot.get_me_json()


async def always_true(state: ApiState, params: Params) -> bool:
    return True


async def get_updates(state: ApiState, params: Params) -> list[JsonDict]:
    if state.webhook.active:
        raise ApiError(409, _WEBHOOK_CONFLICT)
    offset = int_param(params, "offset", 0)
    limit = min(max(int_param(params, "limit", 100), 1), 100)
    timeout = max(int_param(params, "timeout", 0), 0)
    state.updates.set_allowed(params.get("allowed_updates"))
    if offset > 0:
        state.updates.confirm_below(offset)
    elif offset < 0:
        state.updates.keep_last(-offset)
    # A newer getUpdates call terminates a waiting one, as on Telegram.
    state.poll_generation += 1
    generation = state.poll_generation
    state.notifier.notify()
    await state.notifier.wait_until(
        lambda: len(state.updates) > 0 or state.poll_generation != generation or state.closing,
        timeout,
    )
    if state.poll_generation != generation:
        raise ApiError(409, _POLL_CONFLICT)
    return state.updates.take(limit)


async def set_webhook(state: ApiState, params: Params) -> bool:
    url = str_param(params, "url") or ""
    if not url:
        return await delete_webhook(state, params)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in _LOOPBACK_HOSTS:
        raise bad_request("bad webhook: the local Bot API only delivers to loopback addresses")
    secret = str_param(params, "secret_token")
    if secret is not None and not _SECRET_RE.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    max_connections = min(max(int_param(params, "max_connections", 40), 1), 100)
    if bool_param(params, "drop_pending_updates"):
        state.updates.clear()
    state.updates.set_allowed(params.get("allowed_updates"))
    await state.webhook.set(WebhookConfig(url, secret, max_connections))
    state.notifier.notify()
    return True


async def delete_webhook(state: ApiState, params: Params) -> bool:
    if bool_param(params, "drop_pending_updates"):
        state.updates.clear()
    await state.webhook.delete()
    return True


async def get_webhook_info(state: ApiState, params: Params) -> JsonDict:
    return state.webhook.info()


async def answer_callback_query(state: ApiState, params: Params) -> bool:
    query_id = str_param(params, "callback_query_id") or ""
    if not state.consume_callback_query(query_id):
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    state.callback_answers.append(dict(params))
    state.notifier.notify()
    return True


async def leave_chat(state: ApiState, params: Params) -> bool:
    chat = state.chat(chat_id_of(params))
    if chat.is_private:
        raise bad_request("chat member status can't be changed in private chats")
    chat.left = True
    state.left_chats.add(chat.id)
    state.notifier.notify()
    return True


async def get_chat(state: ApiState, params: Params) -> JsonDict:
    chat = state.chat(chat_id_of(params))
    return {**chat.chat, "accent_color_id": 0, "max_reaction_count": 11}


async def set_my_commands(state: ApiState, params: Params) -> bool:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise bad_request("commands is empty")
    for command in commands:
        _check_command(command)
    key = state.commands_key(params.get("scope"), params.get("language_code"))
    state.commands[key] = [dict(command) for command in commands]
    return True


def _check_command(command: Any) -> None:
    if not isinstance(command, dict) or not _COMMAND_RE.fullmatch(str(command.get("command", ""))):
        raise bad_request("BOT_COMMAND_INVALID")
    if not 1 <= len(str(command.get("description", ""))) <= 256:
        raise bad_request("command description is empty")


async def delete_my_commands(state: ApiState, params: Params) -> bool:
    state.commands.pop(state.commands_key(params.get("scope"), params.get("language_code")), None)
    return True


async def get_my_commands(state: ApiState, params: Params) -> list[JsonDict]:
    key = state.commands_key(params.get("scope"), params.get("language_code"))
    return list(state.commands.get(key, []))


async def get_file(state: ApiState, params: Params) -> JsonDict:
    stored = state.files.get(str_param(params, "file_id") or "")
    if stored is None:
        raise bad_request("invalid file_id")
    return stored.file_json()


CONTROL_HANDLERS: dict[str, Handler] = {
    "getMe": get_me,
    "logOut": always_true,
    "close": always_true,
    "getUpdates": get_updates,
    "setWebhook": set_webhook,
    "deleteWebhook": delete_webhook,
    "getWebhookInfo": get_webhook_info,
    "answerCallbackQuery": answer_callback_query,
    "leaveChat": leave_chat,
    "getChat": get_chat,
    "setMyCommands": set_my_commands,
    "deleteMyCommands": delete_my_commands,
    "getMyCommands": get_my_commands,
    "getFile": get_file,
    "setMyDescription": always_true,
    "setMyShortDescription": always_true,
    "setMyName": always_true,
    "setChatMenuButton": always_true,
    "setMyDefaultAdministratorRights": always_true,
}
