"""Claims: every seed paper's headline claim that has run here, with its verdict and seed interval."""
import streamlit as st

from dashboards import data

uri = data.tracking_uri()
st.title("Claims")
st.caption("Each row: one comparison of a claim run (`harness claims run NAME`), ours (first minus second, average "
           "PSNR) beside the paper's, with 95% intervals over seeds and over test images.")
rows = data.claims(uri)
if rows.empty:
    st.info("No claim has run yet against this store. Re-check one with:")
    st.code("harness claims run hair --budget tiny --seeds 3")
else:
    st.dataframe(rows, hide_index=True, key="claims")
