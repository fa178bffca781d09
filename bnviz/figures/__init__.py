"""Plotly figure builders: recorded data in, ``plotly.graph_objects.Figure`` out.

Builders never train and never import Streamlit, so every picture is a pure function of a run
and can be tested and exported on its own. ``style`` holds the shared look (plain is orange, BN is
blue, everywhere); ``drift`` draws the distribution-drift lesson from ``bnviz.train.Twins``.
"""
