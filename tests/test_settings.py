"""Settings: defaults < TOML file < environment < command line, validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import settings_values
from appliance.errors import ConfigError
from appliance.settings import Settings, load_settings


def test_defaults_are_production_the_real_adapter_never_the_simulation() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert (settings.data_dir, settings.radio, settings.host, settings.port) == (
        Path("var"), "bleak", "127.0.0.1", 8000)
    assert settings.reconnect_window_s == 1800


def test_the_virtual_radio_is_accepted_where_the_simulation_registers_it() -> None:
    assert load_settings(env={"APPLIANCE_RADIO": "virtual"}).radio == "virtual"


def test_the_virtual_radio_without_the_simulation_installed_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The image's venv: no package registers a radio under appliance.radios.
    monkeypatch.setattr(settings_values, "entry_points", lambda **_: ())
    with pytest.raises(ConfigError, match=r"radio='virtual'.*expected one of bleak \(virtual is the "
                                          r"simulation: make setup installs it"):
        load_settings(env={"APPLIANCE_RADIO": "virtual"})


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('radio = "bleak"\nport = 9000\ndata_dir = "/srv/a"\n'
                      'public_origins = ["https://p.example.com"]\n')
    settings = load_settings(config, env={"APPLIANCE_PORT": "9100", "APPLIANCE_DATA_DIR": "/srv/b"},
                             port=9200)
    assert settings.radio == "bleak"
    assert settings.data_dir == Path("/srv/b")
    assert settings.port == 9200
    assert settings.public_origins == ("https://p.example.com",)


def test_config_file_found_through_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("away_after_s = 12\n")
    assert load_settings(env={"APPLIANCE_CONFIG": str(config)}).away_after_s == 12


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APPLIANCE_RADIO": "bluez"}, "bad setting radio='bluez' (from APPLIANCE_RADIO): "
                                       "expected one of bleak, virtual"),
        ({"APPLIANCE_PORT": "eighty"}, "bad setting port='eighty' (from APPLIANCE_PORT): "
                                       "expected a whole number from 1 to 65535"),
        ({"APPLIANCE_PORT": "0"}, "expected a whole number from 1 to 65535"),
        ({"APPLIANCE_PASSIVE_SCAN": "maybe"}, "expected true or false"),
        ({"APPLIANCE_PUBLIC_ORIGINS": "printer.example.com"}, "expected origins like"),
        ({"APPLIANCE_AWAY_AFTER_S": "600", "APPLIANCE_RECONNECT_WINDOW_S": "60"},
         "must be shorter than reconnect_window_s=60"),
    ],
)
def test_bad_values_name_the_key_and_the_accepted_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_and_broken_toml_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("radoi = 'bleak'\n")
    with pytest.raises(ConfigError, match="unknown setting 'radoi'"):
        load_settings(config, env={})
    config.write_text("radio = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_toml_types_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = true\n")
    with pytest.raises(ConfigError, match="port=True"):
        load_settings(config, env={})
