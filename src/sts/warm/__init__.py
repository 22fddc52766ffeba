"""The warm-start server of the per-cell commands: the client side (``client``: whether a command goes
through it, the connection, the socket's private directory) and the server (``server``), which
``python -m sts.cli --warm-server SOCKET`` runs with the command line's own ``main``."""
