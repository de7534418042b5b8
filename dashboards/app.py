"""The restoration-bench dashboard (read-only), served by `harness dashboard`.

Pages: a leaderboard per setting, parameters against PSNR, per-task bars, continuous-level
curves, a visual comparison from a run's sample images, and run details. The setting chosen in
the sidebar (or with ?setting=NAME in the address) applies to every page.
"""
from pathlib import Path

import streamlit as st

from dashboards import data

VIEWS = Path(__file__).with_name("views")
PAGES = [
    st.Page(VIEWS / "leaderboard.py", title="Leaderboard", url_path="leaderboard", default=True),
    st.Page(VIEWS / "efficiency.py", title="Parameters vs PSNR", url_path="efficiency"),
    st.Page(VIEWS / "tasks.py", title="Per-task PSNR", url_path="tasks"),
    st.Page(VIEWS / "levels.py", title="Continuous levels", url_path="levels"),
    st.Page(VIEWS / "visual.py", title="Visual comparison", url_path="visual"),
    st.Page(VIEWS / "run.py", title="Run details", url_path="run"),
    st.Page(VIEWS / "claims.py", title="Claims", url_path="claims"),
]

st.set_page_config(page_title="restoration-bench", layout="wide")
page = st.navigation(PAGES)
settings = data.all_settings()
if "setting" not in st.session_state:
    requested = st.query_params.get("setting", "five_deg")
    st.session_state["setting"] = requested if requested in settings else settings[0]
st.sidebar.selectbox("Setting", settings, key="setting")
st.query_params["setting"] = st.session_state["setting"]
st.sidebar.text(f"MLflow store (read-only):\n{data.tracking_uri()}")
page.run()
