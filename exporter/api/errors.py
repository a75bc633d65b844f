"""ApiError and the RetCode classification: transient, throttled or permanent."""

from __future__ import annotations

from exporter.core.failures import Category
from exporter.core.secrets import mask_secrets

THROTTLED_RETCODE = 153
UNSUPPORTED_RETCODE = 161  # the action does not exist on this cloud
_UNSUPPORTED = "this cloud does not serve the action"  # the client names which one
_TRANSIENT_RETCODES = frozenset({110, 130, 150})
# Above this the codes are service-specific; the vendor SDKs retry them.
_SERVICE_SPECIFIC_FLOOR = 2000
# RetCodes come from the server; bound what can become a metric label value.
_MAX_LABELLED_RETCODE = 99_999
_MAX_API_MESSAGE = 200

_HINTS: dict[int, str] = {
    110: "gateway timeout: the API gave up after 60 s",
    130: "gateway or auth service failure",
    150: "service unavailable",
    153: "throttled: the exporter lowers its request rate",
    160: "Action missing",
    161: _UNSUPPORTED,
    170: "signature missing",
    171: "signature wrong: check api.private_key",
    172: "user does not exist: check api.public_key",
    174: "token does not exist: check api.public_key",
    220: "missing parameter: check the target's key and model",
    230: "invalid parameter: check the target's key and model",
    292: "project does not exist: check the target's project",
    294: "caller IP not allowed: check the key's IP allow-list",
    299: "IAM permission denied for this project/key",
}


def classify_retcode(code: int) -> tuple[bool, bool]:
    """Return ``(transient, throttled)`` for a RetCode; 0 and unknown codes are neither."""
    if code == THROTTLED_RETCODE:
        return True, True
    return code in _TRANSIENT_RETCODES or code > _SERVICE_SPECIFIC_FLOOR, False


def describe(code: int) -> str:
    """A short hint an operator can act on for a RetCode."""
    if code in _HINTS:
        return _HINTS[code]
    if code > _SERVICE_SPECIFIC_FLOOR:
        return "service-specific error, retried"
    return "unknown RetCode, not retried"


class ApiError(Exception):
    """A failed API call (of any action), classified for retry and for metrics."""

    def __init__(
        self,
        category: Category,
        message: str,
        *,
        retcode: int | None = None,
        http_status: int | None = None,
        transient: bool = False,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.category: Category = category
        self.message = message
        self.retcode = retcode
        self.http_status = http_status
        self.transient = transient
        self.throttled = throttled
        # Seconds the server asked us to wait (HTTP Retry-After), when it said so.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    @property
    def label(self) -> str:
        """The RetCode as a metric label value: ``"153"``, or ``"none"`` without one."""
        if self.retcode is None:
            return "none"
        if not 0 <= self.retcode <= _MAX_LABELLED_RETCODE:
            return "other"
        return str(self.retcode)

    def naming(self, action: str) -> ApiError:
        """This error with the refused ``action`` named, where the RetCode says one is missing
        (a parser sees only the answer, which does not say which action was asked for)."""
        if self.retcode != UNSUPPORTED_RETCODE or _UNSUPPORTED not in self.message:
            return self
        return self._with(self.message.replace(_UNSUPPORTED,
                                               f"this cloud does not serve {action}", 1))

    def redacted(self, secrets: tuple[str, ...]) -> ApiError:
        """A copy whose message has every secret value masked (defence in depth); see
        :func:`mask_secrets` for which occurrences count as the value."""
        message = mask_secrets(self.message, secrets, "[redacted]")
        if message == self.message:
            return self
        return self._with(message)

    def _with(self, message: str) -> ApiError:
        copy = ApiError(self.category, message, retcode=self.retcode,
                        http_status=self.http_status, transient=self.transient,
                        throttled=self.throttled, retry_after=self.retry_after)
        copy.__cause__ = self.__cause__
        return copy



def retcode_error(code: int, api_message: object) -> ApiError:
    """The ApiError for a non-zero RetCode, quoting the API's own Message."""
    transient, throttled = classify_retcode(code)
    text = f"RetCode {code} ({describe(code)})"
    if isinstance(api_message, str) and api_message.strip():
        text += f": {_printable(api_message)}"
    return ApiError("retcode", text, retcode=code, transient=transient, throttled=throttled)


def _printable(text: str) -> str:
    """One bounded line: the Message is server-controlled and lands in logs."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text.strip())
    if len(flat) > _MAX_API_MESSAGE:
        return flat[:_MAX_API_MESSAGE] + "…"
    return flat
