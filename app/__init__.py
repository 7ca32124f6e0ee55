"""Front ends: the roofsim CLI and the Streamlit dashboard."""
