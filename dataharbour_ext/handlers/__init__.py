"""Thin Tornado handlers, one module per resource; `routes.ROUTES` lists them all."""
