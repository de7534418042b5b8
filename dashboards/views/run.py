"""Run details: tags, parameters, metrics, per-image scores, links to the run and its model in the MLflow UI."""
import pandas as pd
import streamlit as st

from dashboards import data
from dashboards.text import escape
from leaderboards.runs import RELEASED

setting = st.session_state["setting"]
uri = data.tracking_uri()
st.title(f"Run details: {escape(setting)}")
runs = data.runs(uri, setting)
if runs.empty:
    st.info(f"No finished runs of setting {escape(setting)} yet.")
    st.stop()
labels = {r["run_id"]: f"{r['model']} ({r['variant']}, {r['profile']}) - {r['run_name']}"
          + (" [released weights]" if r.get("entry") == RELEASED else "") for r in runs.to_dict("records")}
ids = list(labels)
requested = st.query_params.get("run")
run_id = st.selectbox("Run", ids, index=ids.index(requested) if requested in ids else 0, format_func=labels.get,
                      key="details-run")
record = data.run_record(uri, run_id)
st.link_button("Open this run in the MLflow UI", data.run_url(record["experiment_id"], run_id))
st.text(f"run {record['run_id']}  name {record['run_name']}  status {record['status']}")
for model in data.run_models(uri, run_id, record["tags"].get("logged_model.id")):
    # the network as an MLflow model: what `harness restore`, `evaluate --weights` and `register` take
    what = "logged by this run" if model["role"] == "logged" else "evaluated by this run"
    st.link_button(f"Open the MLflow model {what}", data.model_url(model["experiment_id"], model["model_id"]))
    st.text(f"model runs:/{model['source_run']}/{model['name']}  (id {model['model_id']})")
    for name, version, aliases in model["versions"]:
        st.link_button(f"Registered: models:/{name}/{version}" + "".join(f"  @{a}" for a in aliases),
                       data.version_url(name, version))
metrics = pd.DataFrame(sorted(record["metrics"].items()), columns=["metric", "value"])
tags = pd.DataFrame(sorted(record["tags"].items()), columns=["tag", "value"])
params = pd.DataFrame(sorted(record["params"].items()), columns=["param", "value"])
st.subheader("Metrics")
st.dataframe(metrics, hide_index=True, key="metrics")
st.subheader("Tags")
st.dataframe(tags, hide_index=True, key="tags")
st.subheader("Parameters")
st.dataframe(params, hide_index=True, key="params")
scores = data.per_image(uri, run_id)
st.subheader("Per-image scores")
if scores is None:
    st.info("This run has no per-image metrics (results/per_image.json).")
else:
    rows = [{"task": task, "image": image, **values} for task, images in scores.items() for image, values in images.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="per-image")
