"""Leasehold's HTTP side: the aiohttp service, its CLI, and later the client and agent."""
