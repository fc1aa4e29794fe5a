"""Thin HTTP handlers: each parses the request, calls the pure/IO modules, and renders an answer."""
