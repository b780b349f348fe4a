"""The Pusher Channels protocol (PUSHER.md) as client-protocol adapters on the front.

`Pusher` serves every app of config.json's `apps`: `adapter_for(key, protocol)` gives the
adapter of one app (`PusherApp`), or one that refuses the connection with its close code
(unknown key 4001, protocol 4007/4008). A `PusherApp` greets a connection
(connection_established), checks subscriptions here (name, signature, channel_data, user
channels: stateless work that spreads over the fronts) and sends the admitted ones to the
owning shard as a Join; it relays client events through the shard, signs users in, and
keeps the activity timeout (ping, then 4201), the sign-in deadline (4009) and the app's
connection quota (4004). Under it is the protocol-blind layer of front/front.py: the same
connections, transports, channel index and fan-out as the Pushy protocol's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from pushy_shard.core import link
from pushy_shard.core import pusher_protocol as wire
from pushy_shard.core.config import App
from pushy_shard.core.pusher_auth import auth_matches, channel_string, signin_string
from pushy_shard.core.pusher_names import Kind, parse_channel
from pushy_shard.core.ratelimit import TokenBucket
from pushy_shard.core.routing import app_key
from pushy_shard.errors import (
    STOPPING,
    Close,
    InvalidPusherMessage,
    NotEncodable,
    SubscriptionRefused,
)
from pushy_shard.front.fanout import Connection
from pushy_shard.front.front import Front, ignore_result, shard_error

log = logging.getLogger(__name__)

CLIENT_EVENTS_PER_SECOND = 10.0  # per connection (PUSHER.md 5, rule 5)
CLIENT_EVENT_BURST = 10


def closing(code: int, reason: str) -> Close:
    """A Pusher close: the WebSocket close code, and the same as the SockJS frame of the
    HTTP fallbacks (pusher-js reads both the same way)."""
    return Close(code, reason, (code, reason))


SHUTTING_DOWN = closing(wire.SHUTTING_DOWN, "Server shutting down")
OVER_CAPACITY = closing(wire.OVER_CAPACITY, "Over capacity")


class Session:
    """One Pusher connection's state on this front."""

    __slots__ = ("conn", "app", "user_id", "last_active", "pinged", "signin_by",
                 "client_events")

    def __init__(self, conn: Connection, app: PusherApp, now: float) -> None:
        self.conn = conn
        self.app = app
        self.user_id: str | None = None  # signed in as (pusher:signin)
        self.last_active = now
        self.pinged: float | None = None  # when we sent pusher:ping, still unanswered
        wait = app.front.config.timeouts.pusher_signin  # 30 s (PUSHER.md 6)
        self.signin_by = now + wait if app.settings.user_authentication else None
        self.client_events: TokenBucket | None = None  # made at the first client event


class Pusher:
    """Every Pusher app of the config on this front, and their connections."""

    name = "pusher"

    def __init__(self, front: Front) -> None:
        self.front = front
        self.sessions: dict[str, Session] = {}  # socket id -> the connection's state
        self._apps: dict[str, PusherApp] = {}
        front.on_terminate = self.terminate

    def app(self, app_id: str) -> App | None:
        """The app's settings now (SIGHUP may change them)."""
        return next((a for a in self.front.config.apps if a.id == app_id), None)

    def by_key(self, key: str) -> App | None:
        return next((a for a in self.front.config.apps if a.key == key), None)

    def adapter_for(self, key: str, protocol: str | None) -> Any:
        """The client protocol a connection to `/app/{key}?protocol=N` speaks: its app's
        adapter, or one that refuses it with the close code PUSHER.md 7 gives."""
        refusal = wire.protocol_version_error(protocol)
        if refusal is not None:
            return Refuse(self, refusal, "Unsupported protocol version" if refusal ==
                          wire.PROTOCOL_UNSUPPORTED else "No protocol version given")
        app = self.by_key(key)
        if app is None:
            return Refuse(self, wire.APP_UNKNOWN, f"App key {key[:64]} does not exist")
        adapter = self._apps.get(app.id)
        if adapter is None:
            adapter = self._apps[app.id] = PusherApp(self, app)
        return adapter

    def terminate(self, app_id: str, user_id: str) -> int:
        """Close the connections of app `app_id` signed in as `user_id` on this front with
        4009 (the HTTP API's terminate_connections); how many."""
        doomed = [s for s in self.sessions.values()
                  if s.user_id == user_id and s.app.app_id == app_id]
        for session in doomed:
            session.app.fail(session.conn, wire.UNAUTHORIZED, "Connection terminated")
        return len(doomed)

    def sweep(self, now: float) -> None:
        """Once a second: a ping after `activity_timeout` of silence, 4201 when that
        ping goes unanswered for `timeouts.pusher_pong` (30 s, PUSHER.md 2), 4009 past
        the sign-in deadline."""
        pong_wait = self.front.config.timeouts.pusher_pong
        for session in list(self.sessions.values()):
            app = session.app
            if session.signin_by is not None and now >= session.signin_by:
                app.fail(session.conn, wire.UNAUTHORIZED, "Sign in required")
            elif session.pinged is not None:
                if now - session.pinged >= pong_wait:
                    app.fail(session.conn, wire.PONG_TIMEOUT, "Pong reply not received in time")
            elif now - session.last_active >= app.settings.activity_timeout:
                session.pinged = now
                self.front.hub.send(session.conn, wire.ping())


class Refuse:
    """The adapter of a connection Pusher refuses at once: pusher:error, then its close."""

    open_first = True  # pusher-js reads a fallback session's frames only once it opened

    def __init__(self, pusher: Pusher, code: int, text: str) -> None:
        self.pusher = pusher
        self.code = code
        self.text = text

    @staticmethod
    def new_socket_id() -> str:
        return wire.new_socket_id()

    def admit(self, conn: Connection) -> Close | None:
        conn.send(wire.error(self.code, self.text))
        return closing(self.code, self.text)

    def greet(self, conn: Connection) -> None:
        pass  # never admitted

    def message(self, conn: Connection, text: str) -> None:
        pass

    def activity(self, conn: Connection) -> None:
        pass

    def closed(self, conn: Connection) -> None:
        pass

    def refusal(self, conn: Connection, why: Close) -> Close:
        return _refusal(conn, why)

    def goodbye(self, conn: Connection) -> Close:
        return SHUTTING_DOWN

    def labels(self, conn: Connection) -> tuple[tuple[str, str], ...]:
        return (("transport", conn.transport), ("protocol", "pusher"), ("app", ""))


def _refusal(conn: Connection, why: Close) -> Close:
    """A connection the front does not admit (core/admission.py): 4200 while it stops,
    else 4100 (server capacity, PUSHER.md 7), each after its pusher:error."""
    refusal = SHUTTING_DOWN if why is STOPPING else OVER_CAPACITY
    conn.send(wire.error(refusal.code, refusal.reason))
    return refusal


class PusherApp:
    """The Pusher protocol of one app (PUSHER.md 2-7)."""

    open_first = True  # pusher-js reads a fallback session's frames only once it opened

    def __init__(self, pusher: Pusher, app: App) -> None:
        self.pusher = pusher
        self.front = pusher.front
        self.app_id = app.id
        self._settings = app
        self.connections = 0  # open on this front: the quota's count

    @property
    def settings(self) -> App:
        """The app's settings now; one a reload removed keeps its last for the connections
        it still has."""
        app = self.pusher.app(self.app_id)
        if app is not None:
            self._settings = app
        return self._settings

    # -- the connection ------------------------------------------------------------------------

    @staticmethod
    def new_socket_id() -> str:
        return wire.new_socket_id()  # "123.456": the SDKs check the form (PUSHER.md 2)

    def admit(self, conn: Connection) -> Close | None:
        """4004 past the app's connection quota (each front holds its share:
        max_connections / fronts, rounded up)."""
        app = self.settings
        if app.max_connections is None:
            return None
        share = math.ceil(app.max_connections / self.front.config.fronts)
        if self.connections < share:
            return None
        self.front.breach("app_connections", f"refused a connection of app {app.id}: "
                          f"{share} open on this front")
        conn.send(wire.error(wire.OVER_QUOTA, "Over connection quota"))
        return closing(wire.OVER_QUOTA, "Over connection quota")

    def greet(self, conn: Connection) -> None:
        """connection_established (PUSHER.md 2)."""
        app = self.settings
        self.pusher.sessions[conn.sid] = Session(conn, self, time.monotonic())
        self.connections += 1
        self.front.hub.send(conn, wire.connection_established(conn.sid, app.activity_timeout))

    def activity(self, conn: Connection) -> None:
        session = self.pusher.sessions.get(conn.sid)
        if session is not None:
            session.last_active = time.monotonic()
            session.pinged = None

    def closed(self, conn: Connection) -> None:
        if self.pusher.sessions.pop(conn.sid, None) is not None:
            self.connections -= 1

    def refusal(self, conn: Connection, why: Close) -> Close:
        return _refusal(conn, why)

    def goodbye(self, conn: Connection) -> Close:
        conn.send(wire.error(wire.SHUTTING_DOWN, "Server shutting down"))
        return SHUTTING_DOWN

    def labels(self, conn: Connection) -> tuple[tuple[str, str], ...]:
        return (("transport", conn.transport), ("protocol", "pusher"), ("app", self.app_id))

    def fail(self, conn: Connection, code: int, message: str) -> None:
        """A fatal error (PUSHER.md 7): pusher:error with the code, then the close."""
        self.front.hub.send(conn, wire.error(code, message))
        conn.close(closing(code, message))

    # -- messages ------------------------------------------------------------------------------

    def message(self, conn: Connection, text: str) -> None:
        front = self.front
        budget = front.received(conn, text)
        session = self.pusher.sessions.get(conn.sid)
        if budget is None or session is None:
            return
        now = time.monotonic()
        session.last_active = now
        session.pinged = None
        limits = front.config.limits
        if wire.too_large(text, limits.max_message_bytes):
            front.breach("message_bytes", f"closed {front.who(conn)}: message too large")
            conn.close(Close(1009, "Message too large"))
            return
        if not budget.message(now, limits):
            front.breach("commands_per_second", f"dropped a message of {front.who(conn)}")
            front.hub.send(conn, wire.error(wire.CLIENT_EVENT_RATE,
                                            "Too many messages, slow down"))
            return
        try:
            message = wire.parse(text, limits.max_message_bytes)
        except InvalidPusherMessage as exc:
            front.hub.send(conn, wire.error(None, exc.message))
            return
        if isinstance(message, wire.Ping):
            front.hub.send(conn, wire.pong())
        elif isinstance(message, wire.Subscribe):
            self._subscribe(conn, session, message)
        elif isinstance(message, wire.Unsubscribe):
            self._unsubscribe(conn, message.channel)
        elif isinstance(message, wire.ClientEvent):
            self._client_event(conn, session, message, now)
        elif isinstance(message, wire.Signin):
            self._signin(conn, session, message)

    # -- subscriptions (PUSHER.md 3, 4, 6) -----------------------------------------------------

    def _subscribe(self, conn: Connection, session: Session, message: wire.Subscribe) -> None:
        front = self.front
        app = self.settings
        try:
            channel = parse_channel(message.channel)
            refused = message.refusal()
            if refused is not None:
                raise refused
            member = self._admit(conn, session, app, channel.kind, message)
            key = app_key(app.id, channel.name)
            budget = front.budgets.get(conn.sid)
            joining = key not in conn.channels
            if budget is not None and joining and not budget.may_subscribe(
                    len(conn.channels), front.config.limits):
                front.breach("channels_per_connection",
                             f"refused a subscribe of {front.who(conn)}")
                raise SubscriptionRefused("LimitReached", 429,
                                          "Too many channels on this connection")
        except SubscriptionRefused as exc:
            front.hub.send(conn, wire.subscription_error(
                message.channel, exc.kind, exc.message, exc.status))
            return
        join = link.Join(conn.sid, key, channel.name, member)
        try:
            future = front.request(key, join, front.config.timeouts.command)
        except NotEncodable:
            front.hub.send(conn, wire.subscription_error(channel.name, "BadRequest",
                                                         "Invalid channel_data", 400))
            return
        if budget is not None and joining:
            budget.subscribing += 1
            future.add_done_callback(lambda _: _subscribed(budget))
        future.add_done_callback(lambda f: self._joined(conn, channel.name, f))

    def _admit(self, conn: Connection, session: Session, app: App, kind: Kind,
               message: wire.Subscribe) -> dict[str, Any] | None:
        """The signature, presence member and user-channel checks; the presence member to
        join with. Raises SubscriptionRefused."""
        name = message.channel
        if kind is Kind.USER:
            if session.user_id is None or name != f"#server-to-user-{session.user_id}":
                raise SubscriptionRefused("AuthError", 403,
                                          "Only the signed-in user may subscribe")
            return None
        if kind is Kind.PUBLIC:
            return None
        presence = kind is Kind.PRESENCE
        if presence and message.channel_data is None:
            raise SubscriptionRefused("BadRequest", 400, "Presence channels need channel_data")
        string = channel_string(conn.sid, name, message.channel_data if presence else None)
        if not auth_matches(message.auth, app.key, app.secret, string):
            raise SubscriptionRefused("AuthError", 401, "Invalid signature")
        if not presence:
            return None
        assert message.channel_data is not None
        member = wire.presence_member(message.channel_data)
        return {"user_id": member.user_id, "user_key": member.user_key,
                "user_info": member.user_info}

    def _joined(self, conn: Connection, channel: str, future: asyncio.Future[Any]) -> None:
        """The shard answered the Join: its effects (success or subscription_error) came
        before; only a failure to answer is left to say."""
        if conn.closed:
            return
        if future.exception() is not None:
            status, text = 503, "Service temporarily unavailable"
        else:
            error = shard_error(future.result())
            if error is None:
                return
            status, text = 500, error["message"]
        self.front.hub.send(conn, wire.subscription_error(channel, "ServerError", text, status))

    def _unsubscribe(self, conn: Connection, name: str) -> None:
        key = app_key(self.app_id, name)
        if key in conn.channels:
            future = self.front.request(key, link.Leave(conn.sid, [key]),
                                        self.front.config.timeouts.command)
            future.add_done_callback(ignore_result)

    # -- client events (PUSHER.md 5) -----------------------------------------------------------

    def _client_event(self, conn: Connection, session: Session, message: wire.ClientEvent,
                      now: float) -> None:
        app = self.settings
        hub = self.front.hub
        key = app_key(app.id, message.channel)
        if not app.client_events:
            problem = "Client events are not enabled"
        elif not message.channel.startswith(("private-", "presence-")):
            problem = "Client events need a private or presence channel"
        elif key not in conn.channels:
            problem = "Not subscribed to this channel"
        elif wire.client_event_too_large(message):
            problem = "Client event too large"
        elif not _bucket(session, now).take(now, CLIENT_EVENTS_PER_SECOND, CLIENT_EVENT_BURST):
            self.front.breach("client_events", f"dropped a client event of {self.front.who(conn)}")
            hub.send(conn, wire.error(wire.CLIENT_EVENT_RATE,
                                      "Client event rejected due to rate limit"))
            return
        else:
            problem = None
        if problem is not None:
            hub.send(conn, wire.error(None, problem))
            return
        state = conn.channels[key]
        user_id = state.record.get("user_id") if state.presence and state.record else None
        trigger = link.Trigger(key, message.event, message.data, conn.sid, user_id=user_id,
                               client=True)
        future = self.front.request(key, trigger, self.front.config.timeouts.command)
        future.add_done_callback(ignore_result)

    # -- sign-in (PUSHER.md 6) -----------------------------------------------------------------

    def _signin(self, conn: Connection, session: Session, message: wire.Signin) -> None:
        app = self.settings
        try:
            user_id = wire.signin_user(message.user_data)
            if not auth_matches(message.auth, app.key, app.secret,
                                signin_string(conn.sid, message.user_data)):
                raise InvalidPusherMessage(wire.INVALID_SIGNIN)
            if session.user_id is not None and session.user_id != user_id:
                raise InvalidPusherMessage(wire.INVALID_SIGNIN)
        except InvalidPusherMessage as exc:
            if app.user_authentication:
                self.fail(conn, wire.UNAUTHORIZED, exc.message)
            else:
                self.front.hub.send(conn, wire.error(None, exc.message))
            return
        session.user_id = user_id
        session.signin_by = None
        self.front.hub.send(conn, wire.signin_success(message.user_data))


def _bucket(session: Session, now: float) -> TokenBucket:
    """The connection's client-event bucket (an idle connection holds none)."""
    if session.client_events is None:
        session.client_events = TokenBucket(CLIENT_EVENT_BURST, now)
    return session.client_events


def _subscribed(budget: Any) -> None:
    budget.subscribing -= 1

