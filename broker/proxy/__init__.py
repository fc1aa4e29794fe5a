"""Proxying: route matching, what crosses to and from the upstream, forwarding HTTP and websockets."""
