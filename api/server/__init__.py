"""The server's machinery: request state, middleware, auth guard, errors, routing, SSE, metrics."""
