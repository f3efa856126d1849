"""Mediation: the decisions the relay asks about. `interface.py` is the seam; one module per
implementation beside it."""
