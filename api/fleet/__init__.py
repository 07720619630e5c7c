"""The fleet side of the wire: the typed HTTP client, the agent and the job processes it runs."""

from leasehold.api.fleet.client import (
    BadRequest,
    Conflict,
    Forbidden,
    LeaseholdClient,
    LeaseholdError,
    LeaseLost,
    NotFound,
    Unauthorized,
    Unavailable,
)

__all__ = ["BadRequest", "Conflict", "Forbidden", "LeaseLost", "LeaseholdClient",
           "LeaseholdError", "NotFound", "Unauthorized", "Unavailable"]
