"""tokentrail's dashboard: `tokentrail dashboard`, or `streamlit run` this file.

The entry script of a multipage app: the password gate, then the shared sidebar (filters in the
URL, Refresh), then the chosen page from views/.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tokentrail.dashboard import auth, data, state, ui

# a local tool: no "Deploy" button or developer menu in the toolbar
st.set_option("client.toolbarMode", "minimal")
st.set_page_config(page_title="tokentrail", page_icon=":material/payments:", layout="wide")

# nothing at all renders before the password (not even the page list)
if not auth.gate():
    st.stop()

VIEWS = Path(__file__).with_name("views")
PAGES = [
    # the default page lives at "/" (a url_path would be ignored and /overview not found)
    st.Page(VIEWS / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page(VIEWS / "breakdown.py", title="Breakdown", icon=":material/pie_chart:", url_path="breakdown"),
    st.Page(VIEWS / "budgets.py", title="Budgets", icon=":material/savings:", url_path="budgets"),
    st.Page(VIEWS / "traces.py", title="Traces", icon=":material/account_tree:", url_path="traces"),
    st.Page(VIEWS / "efficiency.py", title="Efficiency", icon=":material/bolt:", url_path="efficiency"),
    st.Page(VIEWS / "sql.py", title="SQL", icon=":material/terminal:", url_path="sql"),
]
PAGE_PARAMS: dict[str, tuple[str, ...]] = {"breakdown": ("by",), "traces": ("trace",), "efficiency": ("whatif",)}
page = st.navigation(PAGES)

st.sidebar.markdown("**tokentrail** · LLM spend")
if st.sidebar.button("Refresh", icon=":material/refresh:", help="Ask the store again (answers are cached 30 s)"):
    data.refresh()

try:
    view = state.sidebar()
    spans = data.load("span_count")
except (data.StoreUnavailable, data.queries.SqlError, ValueError) as e:
    ui.stop_on_error(e)
st.session_state[ui.VIEW_KEY] = view
st.sidebar.caption(f"Store: {data.store_key(data.settings())}")

# a page's own URL parameters (Breakdown's by, Traces' trace, ...) leave with the page
for other, keys in PAGE_PARAMS.items():
    if other != page.url_path:
        for key in keys:
            if key in st.query_params:
                del st.query_params[key]

if spans == 0 and page.url_path != "sql":
    ui.empty_store()
else:
    page.run()
