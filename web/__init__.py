"""The pages: server-rendered GOV.UK Design System pages over the same
cases, rules and authorisation as the JSON API (``api.cases``)."""
