"""DCE/RPC over SMB2 named pipes, sans-IO: PDUs, NDR and the services on IPC$."""
