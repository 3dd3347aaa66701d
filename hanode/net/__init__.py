"""The node's hands on the network: the VIP, its announcements, tickle ACKs.

The only package that opens raw sockets or netlink.  Every function here
blocks and is meant to be called through ``trio.to_thread.run_sync``.
"""


class NetError(Exception):
    """A network operation failed; the text names the interface or address."""
