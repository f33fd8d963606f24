"""Ports: the protocols the services need (queue, webhook sender, platforms and their connectors).

Adapters implement them; composition roots choose the adapters.
"""
