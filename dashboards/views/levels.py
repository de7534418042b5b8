"""Continuous-level curves: PSNR against degradation level (HyperRes settings)."""
import pandas as pd
import streamlit as st

from dashboards import charts, data
from dashboards.text import escape

setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Continuous levels: {escape(setting)}")
levels = charts.setting_levels(setting)
if not levels:
    continuous = [s for s in data.all_settings() if charts.setting_levels(s)]
    st.info(f"Setting {escape(setting)} has no degradation levels. Settings with levels: "
            + ", ".join(escape(s) for s in continuous))
else:
    board = data.board(uri, setting)
    curves = charts.level_curves(board, levels)
    dedicated = charts.dedicated_curves(data.level_board(uri, setting))
    if not dedicated.empty:
        curves = pd.concat([curves, dedicated], ignore_index=True)
    if board.reproduced.empty:
        st.info(f"No finished runs of setting {escape(setting)} yet: only the papers' curves are shown.")
    labels = list(dict.fromkeys(curves["label"]))
    chosen = st.multiselect("Rows", labels, default=labels)
    shown = curves[curves["label"].isin(chosen)]
    if not shown.empty:
        st.altair_chart(charts.curves_chart(shown), width="stretch")
        table = shown.assign(level=shown["level"].map(lambda v: f"{v:g}"))
        order = [f"{v:g}" for v in sorted(shown["level"].unique())]
        table = table.pivot_table(index="label", columns="level", values="psnr", sort=False)[order]
        st.dataframe(table.reset_index(), hide_index=True, key="curves")
