"""Visual comparison: degraded, restored and target images of a run, with a zoomed crop."""
import streamlit as st

from dashboards import data
from dashboards.text import escape
from leaderboards.artifacts import split_strip, zoom_crop

setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Visual comparison: {escape(setting)}")
runs = data.runs(uri, setting)
if runs.empty:
    st.info(f"No finished runs of setting {escape(setting)} yet: nothing to look at.")
    st.stop()
labels = {r["run_id"]: f"{r['model']} ({r['variant']}, {r['profile']}) - {r['run_name']}" for r in runs.to_dict("records")}
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="visual-run")
tasks = data.sample_tasks(uri, run_id)
if not tasks:
    st.info("This run stored no sample images.")
    st.stop()
task = st.selectbox("Task", tasks, key="visual-task")
strip = data.sample(uri, run_id, task)
degraded, restored, target = split_strip(strip)
psnr = data.run_record(uri, run_id)["metrics"].get(f"psnr/{task}")
if psnr is not None:
    st.caption(f"PSNR on this task (mean over its test images): {psnr:.2f} dB")
# PNG, not Streamlit's default JPEG for RGB arrays: JPEG's chroma subsampling moves pixels by up to
# 45 levels on these strips, artefacts a restoration comparison must not add.
columns = st.columns(3)
for column, image, caption in zip(columns, (degraded, restored, target), ("degraded", "restored", "target")):
    column.image(image, caption=caption, width="stretch", output_format="PNG")
st.subheader("Zoomed crop")
left, middle, right, last = st.columns(4)
cy = left.slider("Crop centre (vertical)", 0.0, 1.0, 0.5, 0.01)
cx = middle.slider("Crop centre (horizontal)", 0.0, 1.0, 0.5, 0.01)
size = right.slider("Crop size (pixels)", 8, max(8, min(degraded.shape[:2])), min(48, min(degraded.shape[:2])))
scale = last.slider("Zoom", 1, 8, 4)
columns = st.columns(3)
for column, image, caption in zip(columns, (degraded, restored, target), ("degraded", "restored", "target")):
    column.image(zoom_crop(image, (cy, cx), size, scale), caption=f"{caption} (x{scale})", width="stretch",
                 output_format="PNG")
