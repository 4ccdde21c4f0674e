"""The shared package: what the worker, API and command line have in common.

- ``cli``: the ``escalation`` command and its subcommands.
- ``clitools``: parsing and printing shared by the subcommands.
- ``policy_cli``: ``escalation policy list|show|check|explain|diagram``.
- ``search_attributes``: the typed search attributes operators filter on.
- ``temporal_bin``: where the Temporal CLI and test server binaries live.
- ``settings``: configuration from the environment.
- ``simulate``: ``escalation simulate`` on the time-skipping test server.
- ``run``: ``escalation run``, the embedded default behind ``make run``.
"""
