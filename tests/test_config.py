"""Configuration: argument > environment variable > tokentrail.toml > default; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokentrail import ConfigError
from tokentrail.config import resolve


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith("tokentrail: ")
    return msg


def test_defaults(tt_home: Path) -> None:
    s = resolve()
    assert s.clickhouse_url is None
    assert s.home == tt_home
    assert s.project == "default"
    assert s.capture_content is False
    assert s.embedded and s.embedded_path == tt_home / "store"
    assert s.spool_dir == tt_home / "spool"


def test_precedence_argument_env_file(tt_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tokentrail.toml").write_text('project = "from-file"\nenvironment = "staging"\n')
    assert resolve().project == "from-file"
    monkeypatch.setenv("TOKENTRAIL_PROJECT", "from-env")
    s = resolve()
    assert s.project == "from-env"
    assert s.environment == "staging"
    assert resolve(project="from-arg").project == "from-arg"
    assert s.config_file == tmp_path / "tokentrail.toml"


def test_config_path_from_env(tt_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('[tokentrail]\nclickhouse_url = "chdb:///tmp/x"\ncapture_content = true\n')
    monkeypatch.setenv("TOKENTRAIL_CONFIG", str(cfg))
    s = resolve()
    assert s.clickhouse_url == "chdb:///tmp/x"
    assert s.embedded_path == Path("/tmp/x")
    assert s.capture_content is True


@pytest.mark.parametrize(
    ("kwargs", "env", "field", "fix"),
    [
        ({"clickhouse_url": "mysql://db"}, {}, "clickhouse_url", "chdb:///path"),
        ({}, {"TOKENTRAIL_CLICKHOUSE_URL": "localhost:8123"}, "clickhouse_url (from TOKENTRAIL_CLICKHOUSE_URL)", "http(s)://"),
        ({"project": "my project"}, {}, "project", "no spaces"),
        ({}, {"TOKENTRAIL_CAPTURE_CONTENT": "maybe"}, "capture_content (from TOKENTRAIL_CAPTURE_CONTENT)", "true or false"),
        ({"webhook_url": "hooks.example.com"}, {}, "webhook_url", "https://"),
    ],
)
def test_bad_values_one_line(
    tt_home: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, env: dict, field: str, fix: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        resolve(**kwargs)
    msg = _one_line(info.value)
    assert msg.startswith(f"tokentrail: {field}: ")
    assert fix in msg


def test_home_is_a_file(tt_home: Path, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"^tokentrail: home: .* is not a directory; point it at a directory$"):
        resolve(home=f)


def test_unknown_file_key_and_bad_toml(tt_home: Path, tmp_path: Path) -> None:
    (tmp_path / "tokentrail.toml").write_text('projekt = "x"\n')
    with pytest.raises(ConfigError) as info:
        resolve()
    assert "tokentrail.toml: projekt: is not a tokentrail setting" in _one_line(info.value)
    (tmp_path / "tokentrail.toml").write_text("project = \n")
    with pytest.raises(ConfigError) as info:
        resolve()
    assert "is not valid TOML" in _one_line(info.value)


def test_missing_config_file(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTRAIL_CONFIG", "/nonexistent/tokentrail.toml")
    with pytest.raises(ConfigError, match="TOKENTRAIL_CONFIG: /nonexistent/tokentrail.toml does not exist"):
        resolve()


def test_configure_rejects_bad_value_and_keeps_running(tt_home: Path) -> None:
    import tokentrail

    with pytest.raises(ConfigError):
        tokentrail.configure(clickhouse_url="ftp://nope")


def test_public_configure_takes_every_setting() -> None:
    """One registry (config._FIELDS): tokentrail.configure() has an argument for each setting."""
    import inspect

    import tokentrail
    from tokentrail import config

    params = set(inspect.signature(tokentrail.configure).parameters) - {"config_file", "additional_span_processors"}  # processors are objects, not settings
    assert params == set(config._FIELDS)
