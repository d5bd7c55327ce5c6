"""Users and publisher tokens, for the settings page (the same operations as the CLI)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import validate_request, validate_response

from appliance import schema
from appliance.auth import accounts
from appliance.web.context import services
from appliance.web.errors import json_error
from appliance.web.guard import current_account
from appliance.web.openapi import document_errors

blueprint = Blueprint("admin", __name__)


@blueprint.get("/api/users")
@document_errors(401)
@validate_response(schema.Users)
async def list_users() -> schema.Users:
    """Local users (for the settings page and for picking whom to pair a beacon with)."""
    return schema.Users(users=[
        schema.UserInfo(id=user.id, username=user.username, createdAt=user.created_at)
        for user in await accounts.all_users(services().db)])


@blueprint.post("/api/users")
@validate_request(schema.NewUser)
@document_errors(400, 401, 409, 422)
@validate_response(schema.UserCreated, 201)
async def add_user(data: schema.NewUser) -> tuple[schema.UserCreated, int]:
    ctx = services()
    user = await accounts.add_user(ctx.db, data.username, data.password, now=ctx.clock.wall())
    return schema.UserCreated(id=user.id, username=user.username), 201


@blueprint.put("/api/users/<name>/password")
@validate_request(schema.NewPassword)
@document_errors(400, 401, 404, 422)
@validate_response(schema.Done)
async def change_password(name: str, data: schema.NewPassword) -> schema.Done:
    """Change a password; that user's other sessions end (yours too, if it is yours)."""
    await accounts.set_password(services().db, name, data.password)
    services().sessions.ended()
    return schema.Done(message=f"password of {name} changed")


@blueprint.delete("/api/users/<name>")
@document_errors(401, 404, 409)
@validate_response(schema.Done)
async def delete_user(name: str) -> schema.Done | Response:
    me = current_account()
    if me is not None and me.username.lower() == name.lower():
        return json_error(409, "self", "you cannot delete the account you are logged in with")
    await accounts.delete_user(services().db, name)
    services().sessions.ended()
    return schema.Done(message=f"user {name} deleted")


@blueprint.get("/api/tokens")
@document_errors(401)
@validate_response(schema.Tokens)
async def list_tokens() -> schema.Tokens:
    """Publisher tokens: names and dates only; a token itself is shown once, when created."""
    return schema.Tokens(tokens=[
        schema.TokenInfo(name=t.name, createdAt=t.created_at, lastUsedAt=t.last_used_at)
        for t in await accounts.all_tokens(services().db)])


@blueprint.post("/api/tokens")
@validate_request(schema.NewToken)
@document_errors(400, 401, 409, 422)
@validate_response(schema.TokenCreated, 201)
async def add_token(data: schema.NewToken) -> tuple[schema.TokenCreated, int]:
    """Create a token; the answer is the only time it is shown."""
    ctx = services()
    _record, token = await accounts.add_token(ctx.db, data.name, now=ctx.clock.wall())
    return schema.TokenCreated(name=data.name, token=token), 201


@blueprint.delete("/api/tokens/<name>")
@document_errors(401, 404)
@validate_response(schema.Done)
async def revoke_token(name: str) -> schema.Done:
    await accounts.revoke_token(services().db, name)
    return schema.Done(message=f"token {name} revoked")
