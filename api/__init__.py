"""Leasehold's HTTP side: app factory, server machinery, routes, fleet client and agent, CLI."""
