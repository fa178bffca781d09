"""One module per lesson: a config in, plain data (dataclasses of arrays) out. No Streamlit."""
