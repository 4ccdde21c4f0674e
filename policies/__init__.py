"""Escalation policies as data: no Temporal, no I/O beyond reading YAML.

- ``model``: the pydantic model of a partnership's policy (frozen).
- ``calendar``: working-day arithmetic (DESIGN.md section 3).
- ``loader``: reading and validating policy files, the built-in five.
- ``ladder``: the ladder that would run if nobody acted (``policy explain``).
- ``diagram``: a Mermaid flowchart of a ladder.
"""
