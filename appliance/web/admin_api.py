"""Users and publisher tokens, for the settings page (the same operations as the CLI)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from appliance.auth import accounts
from appliance.store import tokens as token_store
from appliance.store import users as user_store
from appliance.store.db import to_db_time
from appliance.web.context import services
from appliance.web.errors import json_error
from appliance.web.guard import current_account
from appliance.web.models import NewPassword, NewToken, NewUser

blueprint = Blueprint("admin", __name__)


@blueprint.get("/api/users")
async def list_users() -> dict[str, Any]:
    """Local users (for the settings page and for picking whom to pair a beacon with)."""
    return {"users": [
        {"id": user.id, "username": user.username, "createdAt": to_db_time(user.created_at)}
        for user in await user_store.all_users(services().db)]}


@blueprint.post("/api/users")
@validate_request(NewUser)
async def add_user(data: NewUser) -> tuple[dict[str, Any], int]:
    user = await accounts.add_user(services().db, data.username, data.password)
    return {"id": user.id, "username": user.username}, 201


@blueprint.put("/api/users/<name>/password")
@validate_request(NewPassword)
async def change_password(name: str, data: NewPassword) -> dict[str, Any]:
    """Change a password; that user's other sessions end (yours too, if it is yours)."""
    await accounts.set_password(services().db, name, data.password)
    return {"success": True, "message": f"password of {name} changed"}


@blueprint.delete("/api/users/<name>")
async def delete_user(name: str) -> Any:
    me = current_account()
    if me is not None and me.username.lower() == name.lower():
        return json_error(409, "self", "you cannot delete the account you are logged in with")
    await accounts.delete_user(services().db, name)
    return {"success": True, "message": f"user {name} deleted"}


@blueprint.get("/api/tokens")
async def list_tokens() -> dict[str, Any]:
    """Publisher tokens: names and dates only; a token itself is shown once, when created."""
    return {"tokens": [
        {"name": t.name, "createdAt": to_db_time(t.created_at),
         "lastUsedAt": to_db_time(t.last_used_at) if t.last_used_at else None}
        for t in await token_store.all_tokens(services().db)]}


@blueprint.post("/api/tokens")
@validate_request(NewToken)
async def add_token(data: NewToken) -> tuple[dict[str, Any], int]:
    """Create a token; the answer is the only time it is shown."""
    _record, token = await accounts.add_token(services().db, data.name)
    return {"name": data.name, "token": token}, 201


@blueprint.delete("/api/tokens/<name>")
async def revoke_token(name: str) -> dict[str, Any]:
    await accounts.revoke_token(services().db, name)
    return {"success": True, "message": f"token {name} revoked"}
