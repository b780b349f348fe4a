"""Every error pushy-shard raises on purpose, with the wire codes of PROTOCOL.md in one place.

Client errors become a `pushy:error` event (or a subscription-* event); trigger errors become
an HTTP status and a JSON body; config errors stop the process before it serves anything.
"""

from __future__ import annotations

from dataclasses import dataclass


class PushyError(Exception):
    """Base of every error raised on purpose by pushy-shard."""


# -- configuration and start-up ---------------------------------------------------------------


class ConfigError(PushyError):
    """config.json (or the environment) is unusable; `key` names the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config: {key}: {message}")
        self.key = key
        self.message = message


class AddressInUse(PushyError):
    """A front or shard cannot bind its address: another process holds it. The process
    exits with EXIT_ADDRESS_IN_USE, and the supervisor stops the server rather than
    restarting it in a loop."""


EXIT_ADDRESS_IN_USE = 3  # exit status of a process that raised AddressInUse (2: bad config)


# -- client messages (PROTOCOL.md 3) ---------------------------------------------------------


class ClientError(PushyError):
    """A client message that gets `pushy:error {"message": ..., "code": ...}`."""

    code = "000"
    message = "Error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def payload(self) -> dict[str, str]:
        return {"message": self.message, "code": self.code}


class BogusMessage(ClientError):
    """Not a JSON object, or an object with neither/both of `command` and `event` (3.3)."""

    code = "100"
    message = "Bogus message received"


class UnknownCommand(ClientError):
    code = "200"
    message = "Unknown command"


class NoChannel(ClientError):
    code = "300"
    message = "No channel specified"


class InvalidChannel(ClientError):
    """`channel` is not a string, too long, or uses characters we refuse."""

    code = "301"
    message = "Invalid channel name"


class ChannelNameRefused(InvalidChannel):
    """A string channel name over `limits.max_channel_length` or not matching
    `limits.channel_pattern`: the same wire code, counted as a limit breach."""


class TooManyChannels(ClientError):
    """A subscribe past `limits.max_channels_per_connection`; the connection stays as it was."""

    code = "302"
    message = "Too many channels on this connection"


class NotSubscribed(ClientError):
    code = "403"
    message = "Not subscribed to this channel"


class ChannelNotFound(ClientError):
    code = "404"
    message = "Channel not found"


class MessageTooLarge(ClientError):
    code = "413"
    message = "Message too large"


class TooManyCommands(ClientError):
    """Over `limits.commands_per_second` (token bucket): the message was dropped unread."""

    code = "429"
    message = "Too many commands, slow down"


class CommandFailed(ClientError):
    """A command handler raised; the sender gets this, the process keeps serving."""

    code = "500"
    message = "Command failed"


class ShardUnavailable(ClientError):
    """The shard owning a channel did not answer in time."""

    code = "503"
    message = "Service temporarily unavailable"


# -- trigger API (PROTOCOL.md 4.3) -----------------------------------------------------------


class TriggerError(PushyError):
    """A refused trigger: HTTP `status` and body `{"error": {"code": code, "message": ...}}`."""

    status = 400
    code = "400"
    message = "Bad request"
    retry_after: int | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class MissingParameters(TriggerError):
    status = 400
    code = "400"
    message = "Missing required parameters"


class InvalidBody(TriggerError):
    """The body does not parse as its content type says, or has an unsupported type."""

    status = 400
    code = "400"
    message = "Invalid request body"


class UnsupportedContentType(TriggerError):
    status = 415
    code = "415"
    message = "Unsupported content type"


class BodyTooLarge(TriggerError):
    status = 413
    code = "413"
    message = "Request body too large"


class TimestampOutOfBounds(TriggerError):
    status = 403
    code = "501"
    message = "Timestamp out of bounds (600 seconds)"


class InvalidCredentials(TriggerError):
    """Wrong auth_key. The message never echoes the key it was given."""

    status = 403
    code = "403"
    message = "Invalid credentials"


class InvalidTriggerChannel(TriggerError):
    """The channel name breaks `limits.max_channel_length` or `limits.channel_pattern`."""

    status = 400
    code = "400"
    message = "Invalid channel name"


class TriggerReplayed(TriggerError):
    """The same signed request was already accepted inside its timestamp window (replay)."""

    status = 409
    code = "409"
    message = "Trigger already received (replay)"


class TriggerFailed(TriggerError):
    """The owning shard answered the trigger with an error (a request it could not apply);
    nothing changed."""

    status = 500
    code = "500"
    message = "Trigger failed"


class TriggerUnavailable(TriggerError):
    status = 503
    code = "503"
    message = "Service temporarily unavailable"


class TriggerRedisUnavailable(TriggerUnavailable):
    """Redis did not take the event in time (SCALEOUT.md): nothing was delivered after a
    clean failure; after a timeout it may have been. The app may retry."""

    message = "Redis unavailable, retry"
    retry_after = 1


# -- the Pusher protocol (PUSHER.md) ----------------------------------------------------------


class PusherError(PushyError):
    """Base of the Pusher protocol's refusals."""


class InvalidPusherMessage(PusherError):
    """A client frame that is not a JSON object with an `event` (PUSHER.md 2): answered
    `pusher:error` with code null and this message; the connection stays."""

    def __init__(self, message: str = "Invalid message") -> None:
        super().__init__(message)
        self.message = message


class SubscriptionRefused(PusherError):
    """A subscription the server refuses (PUSHER.md 7): `pusher:subscription_error` with
    `type` (BadRequest, AuthError, LimitReached), `status` and `message`; nothing joins."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        super().__init__(f"{kind} {status}: {message}")
        self.kind = kind
        self.status = status
        self.message = message


class BadChannelName(SubscriptionRefused):
    def __init__(self, message: str = "Invalid channel name") -> None:
        super().__init__("BadRequest", 400, message)


class ApiError(PusherError):
    """An HTTP API request refused (PUSHER.md 8): `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, sent as Retry-After when set

    def body(self) -> dict[str, str]:
        return {"error": self.message}


# -- closes (README, Errors): every reason the server ends a client connection, one row each --


@dataclass(frozen=True, slots=True)
class Close:
    """Why the server ends a connection. A SockJS session (WebSocket or HTTP) first gets the
    SockJS frame `c[sockjs]` when there is one; a WebSocket then gets the close frame `code`,
    `reason`. A `protocol_error` (RFC 6455 7.1.7: the client broke the protocol) ends TCP
    right after the close frame; any other close waits a bounded time for the client's
    close frame (front/websocket.py CLOSE_SECONDS) before it ends TCP."""

    code: int
    reason: str
    sockjs: tuple[int, str] | None = None
    protocol_error: bool = False


TOO_MANY_CONNECTIONS = Close(1013, "Too many connections",  # limits.max_connections_per_front
                             (1013, "Too many connections"))
STOPPING = Close(1001, "Server shutting down, please reconnect",  # SIGTERM: every connection
                 (3000, "Server shutting down, please reconnect"))  # and new ones
SLOW_CONSUMER = Close(1008, "Slow consumer",  # limits.slow_consumer_bytes: the client stopped
                      (1008, "Slow consumer"))  # reading
QUEUE_FULL = Close(1008, "Session queue full",  # limits.session_queue_*: HTTP sessions only
                   (1008, "Session queue full"))
SESSION_CLOSED = Close(3000, "Go away!",  # what a closed SockJS HTTP session answers
                       (3000, "Go away!"))
ANOTHER_CONNECTION = Close(2010, "Another connection still open",  # a second receiving
                           (2010, "Another connection still open"))  # request of a session
BROKEN_FRAMING = Close(1002, "Broken framing.", protocol_error=True)  # not a SockJS frame
BINARY_REFUSED = Close(1003, "Text frames only")  # the protocols here are text


# -- SockJS (the sockjs-protocol 0.3.3 answers) ------------------------------------------------


class SockJSFrameError(PushyError, ValueError):
    """A client frame that is not a JSON string or array of strings; SockJS closes on it."""


class SockJSRequestError(PushyError, ValueError):
    """A transport request that SockJS answers with HTTP 500 and `message` as the body."""

    message = "Bad request"

    def __init__(self) -> None:
        super().__init__(self.message)


class PayloadExpected(SockJSRequestError):
    """xhr_send / jsonp_send without a JSON array of strings (sockjs-protocol XhrPolling)."""

    message = "Payload expected."


class BrokenJSON(SockJSRequestError):
    message = "Broken JSON encoding."


class CallbackRequired(SockJSRequestError):
    """htmlfile / jsonp without `c` (sockjs-protocol HtmlFile, JsonPolling test_no_callback)."""

    message = '"callback" parameter required'


class InvalidCallback(SockJSRequestError):
    """A callback that is not a plain dotted JavaScript name: it is echoed into a script."""

    message = 'invalid "callback" parameter'


class SessionStateError(PushyError, RuntimeError):
    """An event the session table has no entry for: a bug in the shell, not a client error."""


# -- links between processes -----------------------------------------------------------------


class LinkError(PushyError):
    """A message on a ZeroMQ link that does not decode; it is dropped and counted."""


class LinkUnavailable(LinkError):
    """A request to a shard could not be queued, or got no answer before its deadline."""


class RequestRefused(LinkError):
    """A shard refuses a front's request before changing anything (a field missing or of the
    wrong type): it answers DONE with `{"error": payload}` rather than dropping it, so the
    front answers its client at once instead of timing out."""


class MetricsError(PushyError, ValueError):
    """A snapshot or supervisor state from another process does not have the expected shape."""


# -- encoding --------------------------------------------------------------------------------


class NotEncodable(PushyError, ValueError):
    """A value JSON cannot carry (a set, a cycle, an int past Python's digit limit, nesting
    past the encoder's depth). Raised while an effect is built, before any state changes."""


# -- client bytes on the wire (the front's own HTTP head and WebSocket readers) --------------


class WireError(PushyError):
    """Client bytes that break HTTP or WebSocket framing; the connection ends."""


class BadRequestHead(WireError):
    """An HTTP request head we cannot read: answered with `status` and closed (or handed to
    aiohttp, which gives its own answer)."""

    status = 400

    def __init__(self, message: str = "Bad Request") -> None:
        super().__init__(message)
        self.message = message


class HeadTooLarge(BadRequestHead):
    """No complete request line (414, RFC 9112 3) or head (431, RFC 6585 5) within the cap;
    answered by the front itself, then closed."""

    def __init__(self, status: int = 431, message: str = "Request Header Fields Too Large"
                 ) -> None:
        super().__init__(message)
        self.status = status


class FrameError(WireError):
    """A WebSocket frame or message that fails the connection (RFC 6455 7.1.7) with close
    `code` and `reason`: 1002 protocol error, 1007 invalid UTF-8, 1009 too big."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason

    def close(self) -> Close:
        """The close that fails the connection: its code and reason, TCP ended at once."""
        return Close(self.code, self.reason, protocol_error=True)


# -- several instances (SCALEOUT.md) ----------------------------------------------------------


class ClusterError(PushyError):
    """Something between this instance and Redis went wrong."""


class ClusterMessageError(ClusterError):
    """A pub/sub message on a pushy channel that does not decode; it is dropped and counted."""


class RedisUnavailable(ClusterError):
    """Redis did not answer (down, stalled past its deadline, or refusing): the request
    fails with a retryable error and nothing else changes."""
