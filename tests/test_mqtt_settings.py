"""The MQTT settings: the broker, its password file, the role, the topic words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import load_settings, mqtt_user, scanner_id


def _password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text("secret\n")
    os.chmod(path, mode)
    return path


def test_no_broker_is_the_default() -> None:
    settings = load_settings(env={})
    assert (settings.mqtt_url, settings.mqtt_embedded, settings.mqtt_homeassistant) == ("", False, False)
    assert (settings.role, settings.site, settings.area) == ("appliance", "home", "main")


def test_a_scanner_takes_its_id_from_the_url_user(tmp_path: Path) -> None:
    settings = load_settings(env={
        "APPLIANCE_ROLE": "scanner", "APPLIANCE_MQTT_URL": "mqtts://workshop@appliance.local:8883",
        "APPLIANCE_MQTT_PASSWORD_FILE": str(_password_file(tmp_path)),
    })
    assert (mqtt_user(settings), scanner_id(settings)) == ("workshop", "workshop")


@pytest.mark.parametrize(("env", "message"), [
    ({"APPLIANCE_MQTT_URL": "http://broker"}, r"mqtt_url='http://broker'.*expected mqtt://host"),
    ({"APPLIANCE_MQTT_URL": "mqtt://u:pw@broker"}, r"no password: it goes in mqtt_password_file"),
    ({"APPLIANCE_MQTT_URL": "mqtt://broker:99999"}, r"expected mqtt://host"),
    ({"APPLIANCE_SITE": "my site"}, r"site='my site'.*lower-case letters"),
    ({"APPLIANCE_AREA": "a/b"}, r"area='a/b'"),
    ({"APPLIANCE_ROLE": "satellite"}, r"role='satellite'.*expected one of appliance, scanner"),
    ({"APPLIANCE_ROLE": "scanner"}, r"a scanner needs mqtt_url"),
    ({"APPLIANCE_ROLE": "scanner", "APPLIANCE_MQTT_URL": "mqtt://broker"}, r"set scanner_id"),
    ({"APPLIANCE_ROLE": "scanner", "APPLIANCE_MQTT_URL": "mqtt://hall@broker"},
     r"set mqtt_password_file"),
    ({"APPLIANCE_MQTT_PASSWORD_FILE": "/nonexistent/pw"}, r"/nonexistent/pw does not exist"),
])
def test_bad_mqtt_settings_say_what_to_do(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = _password_file(tmp_path, 0o644)
    with pytest.raises(ConfigError, match=rf"can be read by other users \(mode 644\); run chmod 600 {path}"):
        load_settings(env={"APPLIANCE_MQTT_PASSWORD_FILE": str(path)})
