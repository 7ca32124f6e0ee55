"""Pure state behind the dashboard pages, one module per page plus shared helpers; nothing here imports streamlit,
so tests and benchmarks call these functions directly."""
