"""MCP (Model Context Protocol): the client that offers other servers' tools to the model
(``config``, ``client``, ``tools``, ``hub``), and codeagent's own tools served to other agents."""
