"""The few error types Crucible raises, split by what the caller can do about them.

``InputError``: the input is wrong; retrying the same input fails the same way, so the
caller must fix it. ``TemporaryError``: something was away or busy; retrying later may
succeed. Both carry a CamelCase ``reason`` that status fields and metrics use.
Translation to gRPC status codes happens only at the servicer edge.
"""


class CrucibleError(Exception):
    """Base of Crucible's errors; ``reason`` is a CamelCase word for status and metrics."""

    reason = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InputError(CrucibleError):
    """A spec, table, update or setting is wrong; fix it, retrying will not help."""

    reason = "InvalidInput"


class TemporaryError(CrucibleError):
    """A peer or resource is away or busy; the same call may succeed later."""

    reason = "Unavailable"
