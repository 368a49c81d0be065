"""The route handlers, one module per resource: thin, parse -> domain -> serialise."""
