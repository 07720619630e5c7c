"""The HTTP routes, one module per resource: jobs, leases, logs, workers, workflows, ops, UI."""
