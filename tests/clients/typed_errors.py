"""The check both client scripts make of an error: the generated client raises its typed
exception, with the document's ErrorResponse parsed into `.data`."""

import seatflow_client as sf


def refused(exception_type, error, call):
    """Call `call`; it must raise `exception_type` whose body is an ErrorResponse with `error`.
    Returns the exception."""
    try:
        call()
    except exception_type as e:
        assert isinstance(e.data, sf.ErrorResponse), f"error body not typed: {e.data!r}"
        assert e.data.error == error, f"{e.data.error} != {error}"
        return e
    raise AssertionError(f"expected {exception_type.__name__} {error}")
