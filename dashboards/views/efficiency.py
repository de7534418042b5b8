"""Parameters against average PSNR: the papers' efficiency figure, reproduced runs included."""
import streamlit as st

from dashboards import charts, data
from dashboards.text import escape

setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Parameters vs average PSNR: {escape(setting)}")
board = data.board(uri, setting)
points = charts.efficiency_points(board)
groups = sorted(points["group"].unique())
chosen = st.multiselect("Show", groups, default=groups)
points = points[points["group"].isin(chosen)]
if board.reproduced.empty:
    st.info(f"No finished runs of setting {escape(setting)} yet: only the papers' rows are shown.")
if points.empty:
    st.info("Nothing to plot: no row has both a parameter count and an average PSNR.")
else:
    st.caption("Reproduced points (whiskers: 95% bootstrap CI) are scored on their own test set; "
               "compare them with the papers' points only when they ran on the real benchmark.")
    st.altair_chart(charts.scatter_chart(points), width="stretch")
    st.dataframe(points, hide_index=True, key="points")
