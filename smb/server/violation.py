"""The one way a client ends its connection by what it sends."""

from __future__ import annotations


class ProtocolViolation(Exception):
    """The client broke the protocol in a way that ends the connection (a frame
    too large, a bad NextCommand, a second NEGOTIATE...): the connection is
    closed with one log line naming the reason, and nothing is answered."""
