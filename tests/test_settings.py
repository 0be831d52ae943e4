"""Settings: shipped defaults < settings file < environment < overrides."""

from pathlib import Path

import pytest

from engine.settings import SettingsError, load_settings


def test_embedded_default_creates_instance_and_secret(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.instance_path == tmp_path / "instance"
    assert settings.database_url == f"sqlite:///{tmp_path / 'instance' / 'promoflow.sqlite'}"
    assert settings.timezone == "Asia/Shanghai"
    secret = (tmp_path / "instance" / "secret_key").read_text()
    assert settings.secret_key == secret and len(secret) > 40
    # the secret is stable across loads
    assert load_settings({}, cwd=tmp_path).secret_key == secret


def test_environment_overrides_file_and_defaults(tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    instance.mkdir()
    (instance / "settings.yaml").write_text("timezone: Europe/Berlin\nlocale: en\n", encoding="utf-8")
    env = {"PROMOFLOW_INSTANCE_PATH": str(instance), "PROMOFLOW_LOCALE": "zh",
           "PROMOFLOW_DATABASE_URL": "postgresql://u@h/db", "PROMOFLOW_DEFINITIONS": "a:b"}
    settings = load_settings(env, cwd=tmp_path)
    assert settings.timezone == "Europe/Berlin"          # from the file
    assert settings.locale == "zh"                      # env beats file
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.definitions == (tmp_path / "a", tmp_path / "b")
    assert settings.settings_file == instance / "settings.yaml"


def test_unknown_setting_is_reported_with_position(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("timezone: UTC\ndatabse_url: sqlite://\n", encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        load_settings({}, settings_file=file, cwd=tmp_path)
    assert str(exc.value) == f"{file}:2:1: unknown setting `databse_url`; did you mean `database_url`?"


def test_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings({"PROMOFLOW_SETTINGS_FILE": str(tmp_path / "nope.yaml")}, cwd=tmp_path)


def test_importing_reads_no_configuration(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, PROMOFLOW_SETTINGS_FILE=str(tmp_path / "nope.yaml"))
    code = "import engine.settings, engine.definitions.loader, engine.publishing, web.cli"
    # would fail if any module read the (missing) settings file at import time
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)


def test_base_url_is_an_http_address_without_trailing_slash(tmp_path: Path) -> None:
    assert load_settings({}, cwd=tmp_path).base_url == "http://127.0.0.1:8000"
    env = {"PROMOFLOW_BASE_URL": "https://promo.example.com/"}
    assert load_settings(env, cwd=tmp_path).base_url == "https://promo.example.com"
    for bad in ("promo.example.com", "ftp://promo.example.com", "https://", "https://a b"):
        with pytest.raises(SettingsError, match="base_url"):
            load_settings({"PROMOFLOW_BASE_URL": bad}, cwd=tmp_path)


def test_session_lifetime_and_password_length_settings(tmp_path: Path) -> None:
    from datetime import timedelta

    defaults = load_settings({}, cwd=tmp_path)
    assert defaults.session_lifetime == timedelta(hours=12) and defaults.password_min_length == 8
    env = {"PROMOFLOW_SESSION_LIFETIME": "30m", "PROMOFLOW_PASSWORD_MIN_LENGTH": "12"}
    custom = load_settings(env, cwd=tmp_path)
    assert custom.session_lifetime == timedelta(minutes=30) and custom.password_min_length == 12
    for name, bad, says in (("SESSION_LIFETIME", "forever", "is not a duration"),
                            ("SESSION_LIFETIME", "1m", "between 5m and 31d"),
                            ("SESSION_LIFETIME", "60d", "between 5m and 31d"),
                            ("PASSWORD_MIN_LENGTH", "six", "not a whole number"),
                            ("PASSWORD_MIN_LENGTH", "4", "between 8 and 128")):
        with pytest.raises(SettingsError, match=says):
            load_settings({f"PROMOFLOW_{name}": bad}, cwd=tmp_path)
