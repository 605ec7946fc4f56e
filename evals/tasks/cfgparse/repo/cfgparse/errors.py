class ParseError(ValueError):
    """A problem in a configuration file; ``line`` is 1-based (0 when it is not about a line)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message
