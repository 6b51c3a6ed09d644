"""Sharing outside the workspace: public links (`links.py`) and signed embeds
(`embeds.py`), the parameter values they fix or limit (`params.py`), and the principal a
shared view runs as: its owner's (`owners.py`)."""
