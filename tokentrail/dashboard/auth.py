"""The password gate: with TOKENTRAIL_DASHBOARD_PASSWORD set, nothing renders before it."""

from __future__ import annotations

import hmac
import os

import streamlit as st

from . import PASSWORD_ENV

_STATE_KEY = "tt_authenticated"


def password_required() -> str | None:
    """The configured password, or None when the dashboard is open."""
    value = os.environ.get(PASSWORD_ENV)
    return value if value else None


def check(given: str, expected: str) -> bool:
    # constant-time: a timing side channel must not leak the password
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def gate() -> bool:
    """True when the session may see the dashboard; otherwise renders the login form only."""
    expected = password_required()
    if expected is None:
        return True
    # the session remembers which password it passed, so changing the env var logs it out
    if st.session_state.get(_STATE_KEY) == _fingerprint(expected):
        return True
    st.title("tokentrail")
    with st.form("tt_login", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="tt_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if check(given, expected):
            st.session_state[_STATE_KEY] = _fingerprint(expected)
            st.rerun()
        st.error("Wrong password.")
    return False


def _fingerprint(password: str) -> str:
    # keep a digest, not the password itself, in the session state
    return hmac.new(b"tokentrail-dashboard", password.encode("utf-8"), "sha256").hexdigest()
