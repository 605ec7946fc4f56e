class HTTPError(Exception):
    """Raised by handlers and the router; the app turns it into a JSON error response."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
