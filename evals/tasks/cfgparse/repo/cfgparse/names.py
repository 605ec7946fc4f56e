"""Section and key names are case-insensitive: everything stores and looks up this form."""


def normalize(name: str) -> str:
    return name.strip().lower()
