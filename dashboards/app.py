"""finsent analyst dashboard: `finsent dashboard` (or `streamlit run dashboards/app.py`).

The login gate runs before the navigation is built, so without a login no page, not even
its title, is rendered. The pages live in `views/`, not `pages/`: Streamlit serves a
`pages/` folder next to the entry script by itself in any run that has not called
`st.navigation` yet (before the login), which would list them and open them by URL.
Pages a role cannot use are left out of the navigation; each page and each write checks
the role again (dashboards.actions).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboards import auth
from dashboards.context import load_settings

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="finsent", page_icon=":material/monitoring:", layout="wide")
settings = load_settings()
user = auth.gate(settings)

pages = [
    st.Page(HERE / "views" / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page(HERE / "views" / "drilldown.py", title="Drill-down", icon=":material/zoom_in:"),
    st.Page(HERE / "views" / "news.py", title="News browser", icon=":material/newspaper:"),
    st.Page(HERE / "views" / "alerts.py", title="Alerts", icon=":material/notifications:"),
    st.Page(HERE / "views" / "subscriptions.py", title="Subscriptions", icon=":material/mail:"),
]
if user.can("label"):
    pages.append(st.Page(HERE / "views" / "labelling.py", title="Labelling queue", icon=":material/label:"))
pages.append(st.Page(HERE / "views" / "models.py", title="Models", icon=":material/model_training:"))

# Common to every page: drawn by this script before the chosen page runs.
auth.account_box(user)
st.navigation(pages).run()
