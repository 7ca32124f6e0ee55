"""The Streamlit multipage dashboard: Home.py is the entry script, pages/ holds one script per page."""
