"""Errors the domain and storage raise; the HTTP layer maps them to problem responses, the CLI to a line."""


class DomainError(Exception):
    pass


class ShopNotFound(DomainError):
    def __init__(self, shop_id: str) -> None:
        super().__init__("There is no coffee shop with this id.")
        self.shop_id = shop_id


class InvalidCursor(DomainError):
    def __init__(self) -> None:
        super().__init__("The cursor is not one this listing handed out; start again without it.")


class StorageUnavailable(DomainError):
    """The database or the object store could not be reached or refused the request."""


class SchemaTooNew(DomainError):
    """The database was migrated by a newer release; this one must not write to it.

    Defined here, not in the SQLite backend, so the CLI can report it without importing a backend.
    """
