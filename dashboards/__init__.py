"""The Streamlit dashboard: read-only views of the tracked runs beside the papers' numbers."""
