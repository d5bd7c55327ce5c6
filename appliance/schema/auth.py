"""Sessions, local users and publisher tokens (the login, the settings page, the CLI's rules)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, WithJsonSchema

from appliance.auth.policy import (
    MAX_NAME_LEN,
    MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
    NAME_PATTERN,
    check_name,
    check_password,
    check_token_name,
)
from appliance.schema.time import ApiTime

# The policies of appliance.auth.policy as field types: the same check and message as the CLI
# and first boot; the JSON Schema states the rule for the OpenAPI document.
Password = Annotated[str, AfterValidator(check_password), WithJsonSchema(
    {"type": "string", "minLength": MIN_PASSWORD_LEN, "maxLength": MAX_PASSWORD_LEN})]
UserName = Annotated[str, AfterValidator(check_name),
                     WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
TokenName = Annotated[str, AfterValidator(check_token_name),
                      WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]


class LoginRequest(BaseModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LEN)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LEN)]


class SessionInfo(BaseModel):
    username: str
    id: int


class NewUser(BaseModel):
    username: UserName
    password: Password


class NewPassword(BaseModel):
    password: Password


class NewToken(BaseModel):
    name: TokenName


class UserInfo(BaseModel):
    id: int
    username: str
    createdAt: ApiTime


class UserCreated(BaseModel):
    id: int
    username: str


class Users(BaseModel):
    users: list[UserInfo]


class TokenInfo(BaseModel):
    name: str
    createdAt: ApiTime
    lastUsedAt: ApiTime | None


class Tokens(BaseModel):
    tokens: list[TokenInfo]


class TokenCreated(BaseModel):
    name: str
    token: str = Field(description="shown this once; only its hash is kept")

