"""The analysts' Panel app: Browse, Visualize and Export tabs over the census warehouse.

Serve it with `panel serve explorer/app.py` or `python -m explorer`. The filter
component is reusable on its own (notebooks, tests): `from explorer.filters import FilterPanel`.
"""
