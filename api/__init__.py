"""The HTTP API: one router per resource under api/routes, dependencies in api/deps."""
