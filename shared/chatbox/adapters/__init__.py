"""Adapters to one hosting platform (AWS Lambda): secrets at cold start, structured logs.

Outside the core: these modules may import boto3 and Powertools; the core never imports them.
The Lambda functions (`functions/<name>/handler.py`) are their only users.
"""
