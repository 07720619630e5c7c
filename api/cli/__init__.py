"""The ``leasehold`` command line: serve, reaper, agent, token and bench."""
