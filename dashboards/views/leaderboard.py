"""Leaderboard page: reproduced rankings (with 95% CIs) beside the papers' reported rows."""
import streamlit as st

from dashboards import data, tables
from dashboards.text import escape
from leaderboards.views import available_views


def number_formats(frame, link=False):
    """Column formats: PSNR with 2 decimals, SSIM with 4 (numbers stay numbers, so columns sort)."""
    config = {}
    for column in frame.columns:
        if column.endswith("CI") or frame[column].dtype == object:
            continue
        if "PSNR" in column or column.startswith("lead over"):
            config[column] = st.column_config.NumberColumn(format="%+.2f" if "Δ" in column or "lead" in column else "%.2f")
        elif "SSIM" in column:
            config[column] = st.column_config.NumberColumn(format="%.4f")
        elif column in ("params (M)", "MACs (G)", "CPU latency (ms)"):
            config[column] = st.column_config.NumberColumn(format="%.2f")
    if link:
        config["MLflow run"] = st.column_config.LinkColumn("MLflow run", display_text="open in MLflow")
    return config


setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Leaderboard: {escape(setting)}")

runs = data.runs(uri, setting)
profiles, sources = tables.filter_options(runs)
left, middle, right, last = st.columns(4)
shown = left.multiselect("Source", ["reproduced", "reported"], default=["reproduced", "reported"])
chosen_profiles = middle.multiselect("Profile", profiles, default=profiles)
chosen_sources = right.multiselect("Data source", sources, default=sources)
pick = last.radio("Run standing for a model", ["best", "latest"], horizontal=True)
# the protocol view ranked on: the setting's own first, then its colour twin and matlab (after `harness rescore`)
views = available_views(setting)
view = st.radio("Protocol view", views, horizontal=True, format_func=str.upper, key=f"view-{setting}",
                help="RGB: PSNR/SSIM over the colour channels; Y: on BT.601 luma; MATLAB: luma rounded to 8 bits, "
                     "MATLAB's SSIM. Rows whose rank differs under the other colour view are highlighted.") if views else None
board = data.board(uri, setting, pick, tuple(chosen_profiles), tuple(chosen_sources), view)

if "reproduced" in shown:
    if runs.empty:
        st.info(f"No finished runs of setting {escape(setting)} in this MLflow store yet. "
                "Train one, then reload this page:")
        st.code(f"harness submit --model res_hair --setting {setting}", language="bash")
    elif board.missing_view:
        st.info(f"No run matching the filters has {view.upper()}-view scores yet. Score the saved outputs again:")
        st.code(board.missing_view, language="bash")
    elif board.reproduced.empty:
        st.info("No run matches the chosen profiles and data sources.")
    for ranking, frame in tables.ranking_tables(board, data.run_url).items():
        st.subheader(f"Reproduced: {escape(ranking)}")
        st.caption(f"Ranked within this test set only, on the {board.view.upper()} view; {pick} run per model. "
                   "Each mean carries a 95% percentile bootstrap interval over the test images; the lead over the "
                   "next row is a paired bootstrap. Highlighted rows change place under the other view "
                   "(rank change column).")
        st.dataframe(tables.mark_rank_changes(frame), hide_index=True, key=f"ranking-{ranking}",
                     column_config=number_formats(frame, link=True))

if "reported" in shown:
    st.subheader("Reported in the papers (not ranked)")
    reported = tables.reported_table(board)
    if reported.empty:
        st.info("The papers report no results for this setting.")
    else:
        st.caption("As printed in each paper's table (cited per row); not re-ranked against reproduced runs.")
        formats = {c: st.column_config.NumberColumn(format="%.3f" if c.startswith("SSIM") else "%.2f")
                   for c in reported.columns if c.startswith(("SSIM", "PSNR"))}
        st.dataframe(reported, hide_index=True, key="reported", column_config=formats)

differences = tables.differences_table(board)
if set(shown) == {"reproduced", "reported"} and not differences.empty:
    st.subheader("Reproduced minus reported")
    st.caption("Comparable only for the paper configuration or the authors' released weights, scored on the real "
               "test sets; see the caveat column.")
    st.dataframe(differences, hide_index=True, key="differences", column_config=number_formats(differences))
