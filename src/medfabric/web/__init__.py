"""Dashboard pages and assets.

May use: api.
"""
