"""Money: prices (configured and listed), cost meters and budgets.

Pure arithmetic on totals and prices. Must never import accounting, api, polling, web or metrics.
"""
