"""A small MCP server for the client's tests, written with the SDK: ``python mcp_calc_server.py
[MARKER]`` serves over stdio (touching MARKER, when given, to show it started), ``--http
PORT`` over streamable HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def getenv(variable: str) -> str:
    """The server's environment variable VARIABLE, or (unset)."""
    return os.environ.get(variable, "(unset)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        if len(sys.argv) > 1:
            Path(sys.argv[1]).write_text(str(os.getpid()))
        server.run()
