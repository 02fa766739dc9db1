"""The Streamlit spending dashboard.

Run it with `tokentrail dashboard` (or `streamlit run <APP_PATH>`). It reads the store named
by tokentrail's settings (TOKENTRAIL_CLICKHOUSE_URL / TOKENTRAIL_HOME / tokentrail.toml) and,
when TOKENTRAIL_DASHBOARD_PASSWORD is set, shows nothing before that password is given.
Every figure comes from `tokentrail.queries`, the module the CLI uses too.
"""

from __future__ import annotations

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")
PASSWORD_ENV = "TOKENTRAIL_DASHBOARD_PASSWORD"

__all__ = ["APP_PATH", "PASSWORD_ENV"]
