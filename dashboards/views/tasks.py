"""Per-task PSNR bars of the chosen rows (reproduced with 95% CIs, reported as printed)."""
import streamlit as st

from dashboards import charts, data
from dashboards.text import escape

setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Per-task PSNR: {escape(setting)}")
board = data.board(uri, setting)
bars = charts.task_bars(board)
if bars.empty:
    st.info(f"No runs and no reported results for setting {escape(setting)}.")
else:
    if board.reproduced.empty:
        st.info(f"No finished runs of setting {escape(setting)} yet: only the papers' rows are shown.")
    labels = list(dict.fromkeys(bars["label"]))
    default = [label for label in labels if not label.endswith("]")] or labels[:4]
    chosen = st.multiselect("Rows", labels, default=default)
    shown = bars[bars["label"].isin(chosen)]
    if not shown.empty:
        st.altair_chart(charts.bars_chart(shown), width="content")
    st.dataframe(shown.pivot_table(index="label", columns="task", values="psnr", sort=False).reset_index(),
                 hide_index=True, key="bars")
