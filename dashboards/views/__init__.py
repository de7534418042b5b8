"""The dashboard's pages, one Streamlit script each (dashboards/app.py registers them)."""
