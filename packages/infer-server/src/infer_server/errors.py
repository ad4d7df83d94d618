"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`.

Every failure a route can report is an `APIError`; the app turns it into a
JSON response with its status and headers. Client mistakes are 4xx, never 500.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered to the client as OpenAI error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_ or _TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)


def engine_unavailable(message: str = "The inference engine is not available") -> APIError:
    return APIError(502, message, code="engine_unavailable")


def engine_timeout(seconds: float) -> APIError:
    return APIError(
        504,
        f"Engine request timed out: no progress for {seconds:g}s while the engine was idle",
        code="engine_timeout",
    )


def from_engine(code: str, message: str) -> APIError:
    """Map a RequestError code from the engine to the HTTP error the client sees."""
    if code == "overloaded":
        return APIError(
            503,
            message or "The engine is overloaded",
            code="overloaded",
            headers={"Retry-After": "1"},
        )
    if code == "context_too_long":
        return APIError(400, message, param="messages", code="context_length_exceeded")
    if code == "invalid_request":
        return APIError(400, message, code="invalid_request")
    if code == "shutting_down":
        return APIError(
            503,
            message or "The engine is shutting down",
            code="shutting_down",
            headers={"Retry-After": "5"},
        )
    return APIError(502, message or "The engine failed the request", code=f"engine_{code}")
