"""Adapters: the ports implemented on real infrastructure (SQS, the local queue, HTTP, AWS).

They import ports and the domain, never services or faces; composition roots choose them.
"""
