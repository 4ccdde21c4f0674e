"""The partnership's quarterly theme report, from the register only.

- ``reports.period``: the period (a quarter, or whole days) in the
  partnership's time zone.
- ``reports.figures``: the counts, shares and times, read from the
  register's clear columns and anonymised before they leave it.
- ``reports.charts``: matplotlib charts as SVG.
- ``reports.render``: JSON, CSV, HTML and PDF.
- ``reports.build``: one report for a partnership and period, in every
  format, as the CLI, the schedule and the API use it.
"""
