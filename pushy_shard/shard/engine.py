"""A shard without its sockets: link messages in, link messages out (ARCHITECTURE.md 2, 6).

`Shard` owns its channels' state (a ChannelStore, one ChannelState per app), its view of the
fronts (core/front_view.py), replay protection and the custom command handlers. The shell
(worker.py) feeds it every message a front sends, with the time, and sends what `take`
returns: one multipart message per front for everything one loop turn produced, so a
request's effects and its Done arrive together or not at all. The in-memory pair of the
tests drives the same object without sockets.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pushy_shard.commands import (
    CommandContext,
    Forward,
    Handler,
    ShardSide,
    new_member_id,
    run_handler,
)
from pushy_shard.core import channel_query as query
from pushy_shard.core import cluster_wire, link, metrics
from pushy_shard.core.channels import (
    Broadcast,
    ChannelState,
    ChannelStore,
    ChannelTable,
    Effect,
    Hook,
    Joined,
    Left,
    MemberState,
    Reply,
    hook_events,
)
from pushy_shard.core.cluster_presence import Change, Heard, Mirror
from pushy_shard.core.cluster_view import Asked, ClusterView, PresenceOp, Turn
from pushy_shard.core.config import App, Config
from pushy_shard.core.front_view import Answer, Apply, FrontsView, Restore
from pushy_shard.core.metrics import Metrics
from pushy_shard.core.outbox import Outbox
from pushy_shard.core.pusher_channels import PusherChannels
from pushy_shard.core.ratelimit import BreachLog
from pushy_shard.core.replay import ReplayCache
from pushy_shard.core.routing import PUSHY_APP, app_key, app_of, name_of, shard_for
from pushy_shard.errors import (
    ApiError,
    ClusterMessageError,
    CommandFailed,
    LinkError,
    UnknownCommand,
)

log = logging.getLogger(__name__)

_OP_LABELS = {link.Command.OP: (("op", "command"),), link.Leave.OP: (("op", "leave"),),
              link.Trigger.OP: (("op", "trigger"),), link.Join.OP: (("op", "join"),),
              link.Query.OP: (("op", "query"),)}
_OTHER_OP = (("op", "other"),)
_REFUSED = link.body({"error": CommandFailed().payload()})
_UNAVAILABLE = link.body({"unavailable": "redis"})
# with several instances these are decided in Redis, cluster-wide, not by one shard's table
_CLUSTER_HOOKS = frozenset({"channel_occupied", "channel_vacated", "subscription_count"})


class _Pending:
    """A request whose Done waits for Redis (a trigger's PUBLISH)."""


PENDING = _Pending()


@dataclass(frozen=True, slots=True)
class _Waiter:
    """Who waits for a PUBLISH: the front's identity and request id."""

    identity: bytes
    rid: bytes
    pusher: bool  # a Pusher app's trigger: its answer has the subscription count


@dataclass(frozen=True, slots=True)
class _PresenceJoin:
    """A local presence join waiting for Redis: its success goes when the channel's
    mirror reached the join (core/cluster_presence.py)."""

    front: int
    sid: str
    key: str


class Shard:
    """Applies fronts' requests to its channels, in arrival order."""

    def __init__(self, config: Config, index: int, registry: dict[str, Handler],
                 incarnation: str | None = None,
                 on_output: Callable[[], None] | None = None) -> None:
        self.config = config
        self.index = index
        self.registry = registry
        self.channels = ChannelStore(self._new_state)
        self.replay = ReplayCache()
        self.fronts = FrontsView(index, incarnation or secrets.token_hex(8), config.fronts)
        self.metrics = Metrics()
        self._breach_log = BreachLog()
        self._outbox = Outbox()
        # several instances (SCALEOUT.md): what this shard listens to and tells Redis
        self.cluster = ClusterView() if config.cluster is not None else None
        self._touched: set[str] = set()  # keys whose local member count may have changed
        self._turns: list[Turn] = []
        self._names: dict[str, str] = {}  # key -> display name, for cluster webhooks
        self._node = ""  # this instance's node name (the shell sets it)
        self._instance = ""  # ...and this shard's name in Redis
        self._mirrors: dict[str, Mirror] = {}  # presence channels as Redis has them
        self._checks: list[tuple[float, PresenceOp]] = []  # departures' webhook checks
        self._hooks: list[tuple[str, dict[str, Any]]] = []  # transitions for the hooks process
        self._hook_messages: list[link.Transitions | link.HookState] = []  # ...in order
        self._hook_events = _hook_events(config)
        self._recovered = False  # its state was sent to the hooks process after recovery
        self.on_output = on_output  # told when output starts waiting (the shell flushes)
        self.on_recovered: Callable[[], None] | None = None  # every front replayed
        self.redis_up = True  # with several instances: the shell's last word on Redis
        self.extra_stats: Callable[[], list[metrics.Sample]] | None = None  # the shell's
        # counted as plain ints on the effect path, reported by `stats`
        self.published = 0  # Broadcast effects
        self.link_deliveries = 0  # Deliver messages: one per Broadcast per front
        self.subscriptions = 0  # Joined effects
        self.dropped_output = 0  # link send failures, counted by the shell
        self.hooks_dropped = 0  # webhook transitions the hooks link could not queue
        self.cluster_in = 0  # pub/sub messages applied
        self.cluster_malformed = 0  # pub/sub messages that did not decode
        self.presence_gaps = 0  # catch-ups the presence log was too short for

    @property
    def incarnation(self) -> str:
        return self.fronts.incarnation

    def _new_state(self, app: str) -> ChannelState:
        """The Pushy channels are a ChannelTable; each Pusher app's, PusherChannels."""
        state: ChannelState
        if app != PUSHY_APP:
            state = PusherChannels(lambda: self._app(app), on_channel=self._channel_changed)
        else:
            state = ChannelTable(self.config.secret_key,
                                 max_presence_bytes=self.config.limits.max_presence_data,
                                 on_channel=self._channel_changed)
        state.on_breach = self.breach
        state.hooks = self._hook_events.get(app, frozenset())
        state.shared_presence = self.config.cluster is not None
        return state

    def _app(self, app_id: str) -> App | None:
        """The Pusher app's settings now (SIGHUP may change them)."""
        return next((app for app in self.config.apps if app.id == app_id), None)

    # -- input -------------------------------------------------------------------------------

    def receive(self, identity: bytes, frames: list[bytes], now: float) -> None:
        """One multipart message from the front with routing identity `identity`."""
        try:
            op = frames[0]
            if op == link.BATCH:  # a front's messages of one loop turn
                for part in link.unbatch(frames):
                    self.receive(identity, part, now)
                return
            if op == link.Stats.OP:  # even from an unsynced front: a scrape must not wait
                samples = metrics.to_wire(self.stats())
                self._send(identity, link.Done(frames[1], link.body({"samples": samples})))
                return
            if op in (link.Hello.OP, link.Resync.OP):
                message = link.decode_control(frames)
                if isinstance(message, link.Hello):
                    self._act(self.fronts.hello(identity))
                elif isinstance(message, link.Resync):
                    self._act(self.fronts.resync(identity, message, now))
                return
            self._act(self.fronts.message(identity, frames, now))
        except (LinkError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("shard %d: dropped malformed link message: %s", self.index, exc)

    def sweep(self, now: float) -> None:
        """Once a second: fronts silent past `timeouts.front_silence` are given up, and the
        channels send what waited (throttled counts)."""
        self._act(self.fronts.expire(now, self.config.timeouts.front_silence))
        self.perform(self.channels.tick(int(time.time() * 1000)))
        if self.cluster is not None:
            self.cluster.idle(now)
            checks = [op for due, op in self._checks if due <= now]
            self._checks = [(due, op) for due, op in self._checks if due > now]
            for op in checks:
                self.cluster.presence(op)
            # display names are kept while a channel is listened to or has a check to come
            keep = {op.key for _, op in self._checks} | {op.key for op in checks}
            keep |= set(self.cluster.listening)
            self._names = {key: name for key, name in self._names.items() if key in keep}
            self._wake()

    def end_recovery(self) -> None:
        """The recovery grace ended: apply what was held back."""
        self._act(self.fronts.end_recovery())

    def take(self) -> dict[bytes, list[bytes]]:
        """What to send now: one multipart message per front identity (with several
        instances, what does not wait for Redis)."""
        if self.cluster is not None:
            self._cluster_turn()
        return {identity: link.batch(messages)
                for identity, messages in self._outbox.take().items()}

    def take_hooks(self) -> list[link.Transitions | link.HookState]:
        """What goes to the hooks process now, in order: the transitions decided since the
        last call, and a HookState where one was made."""
        self._end_transitions()
        messages, self._hook_messages = self._hook_messages, []
        return messages

    def send_hook_state(self, announce: bool) -> None:
        """This shard's channels of every app with webhooks (link.HookState), after the
        transitions before it. Not with several instances: Redis decides every transition
        there (shard/redis_scripts.py), and a shard's own channels are not the truth."""
        if self.cluster is not None:
            return
        self._end_transitions()
        state = {app: self.channels.app(app).hook_state() for app in self._hook_events}
        self._hook_messages.append(link.HookState(self.index, announce, state))
        if self.on_output is not None:
            self.on_output()

    def dropped_hooks(self, message: link.Transitions | link.HookState) -> None:
        """The shell could not queue `message` for the hooks process (counted, logged)."""
        lost = len(message.events) if isinstance(message, link.Transitions) else 1
        self.hooks_dropped += lost
        self.breach_line("hooks", f"hooks link full or down: {lost} webhook transition(s) "
                         f"dropped ({self.hooks_dropped} so far)")

    def _end_transitions(self) -> None:
        if self._hooks:
            self._hook_messages.append(link.Transitions(self.index, tuple(self._hooks)))
            self._hooks = []

    def reload(self, config: Config) -> None:
        """SIGHUP: live settings apply from the next message on (core/reload.py)."""
        self.config = config
        self._hook_events = _hook_events(config)
        for app, state in self.channels.apps.items():
            state.hooks = self._hook_events.get(app, frozenset())
            if isinstance(state, ChannelTable):
                state.secret = config.secret_key

    # -- the fronts' view, acted on -----------------------------------------------------------

    def _act(self, actions: Sequence[Answer | Restore | Apply]) -> None:
        self._acted(actions)
        if not self._recovered and not self.fronts.recovering:
            # every front replayed (or the grace ended): the hooks process may now compare
            # what it announced with what this shard holds
            self._recovered = True
            if self._hook_events:
                self.send_hook_state(announce=True)
            if self.on_recovered is not None:
                self.on_recovered()

    def _acted(self, actions: Sequence[Answer | Restore | Apply]) -> None:
        for action in actions:
            if isinstance(action, Apply):
                self._apply(action)
            elif isinstance(action, Answer):
                self._send(action.identity, action.message)
            else:
                if action.reason == "silent":
                    log.warning("shard %d: front %d silent for %gs; its members leave",
                                self.index, action.front, self.config.timeouts.front_silence)
                elif action.reason == "restarted":
                    log.info("shard %d: front %d restarted; its former members leave",
                             self.index, action.front)
                self._touched.update(member.key for member in action.members)
                self.perform(self.channels.restore_front(action.front, action.members,
                                                         announce=action.announce))
                if self.cluster is not None:  # idempotent in Redis: a replay joins once
                    for member in action.members:
                        if member.presence:
                            if member.key not in self._mirrors:
                                self._mirrors[member.key] = Mirror(catch_up=True)
                            self._presence_join(member, None)

    def _apply(self, apply: Apply) -> None:
        """Apply one request and always answer it (Done), so the front never waits it out.

        A request is decoded and checked, and every message it causes is encoded, before the
        channels change (ChannelTable, CommandContext.broadcast); what fails there changes
        nothing and is answered `{"error": payload}`: the front turns it into pushy:error /
        an HTTP error.
        """
        rid, request = link.decode_request(apply.frames)
        self.metrics.inc("pushy_shard_requests_total", _OP_LABELS.get(apply.frames[0], _OTHER_OP))
        if isinstance(request, link.Malformed):
            self.breach_line("refused", f"refused a request of front {apply.front}: "
                             f"{request.reason}")
            result = _REFUSED
        else:
            try:
                answer = self._result(apply.front, request, apply.identity, rid)
                if answer is PENDING:
                    return
                result = link.body(answer)
            except (ValueError, TypeError, RecursionError):  # a bug: nothing fails this late
                log.exception("shard %d: request %r of front %d failed", self.index,
                              apply.frames[0], apply.front)
                result = _REFUSED
        self._send(apply.identity, link.Done(rid, result))

    def _result(self, front: int, request: link.Request, identity: bytes,
                rid: bytes) -> dict[str, Any] | _Pending:
        if isinstance(request, link.Command):
            return self._command(front, request)
        if isinstance(request, link.Leave):
            self.perform(self.channels.leave(request.sid, request.keys))
            return {}
        if isinstance(request, link.Trigger):
            if self._replayed(request):
                return {"replay": True}
            state = self.channels.for_key(request.key)
            if self.cluster is not None:
                return self._publish(state, request, identity, rid)
            members, effects = state.trigger(request.key, request.event, request.data,
                                             request.exclude, now_ms=int(time.time() * 1000),
                                             user_id=request.user_id, client=request.client)
            self.perform(effects)
            if isinstance(state, PusherChannels):  # the HTTP API's `info` may ask for these
                return {"members": members, **state.info(request.key)}
            return {"members": members}
        if isinstance(request, link.Query):
            if request.what == "terminate":  # several instances: tell the others
                if self.cluster is None:
                    return {"api_error": [400, "terminate is asked of the fronts"]}
                message = cluster_wire.Terminate(request.app, request.name, self._node)
                self.cluster.publish(cluster_wire.TERMINATE_KEY, message.encode(),
                                     _Waiter(identity, rid, False))
                self._wake()
                return PENDING
            if self.cluster is not None:  # asked of Redis: every instance's channels
                self.cluster.query(Asked(request, _Waiter(identity, rid, False)))
                self._wake()
                return PENDING
            return self._query(request)
        if isinstance(request, link.Join):
            state = self.channels.for_key(request.key)
            self.perform(state.subscribe(
                front=front, sid=request.sid, channel=request.channel,
                request={"key": request.key, "member": request.member},
                now_ms=int(time.time() * 1000), new_member_id=new_member_id))
            return {}
        raise ValueError(f"no request is applied as {type(request).__name__}")

    # -- several instances (SCALEOUT.md) -------------------------------------------------------

    def _publish(self, state: ChannelState, request: link.Trigger, identity: bytes,
                 rid: bytes) -> _Pending:
        """A trigger goes to Redis; every instance's shard delivers it when it comes back
        on its subscription (one order per channel: Redis's). The Done waits for Redis."""
        assert self.cluster is not None
        message = cluster_wire.Published(request.event, request.data, request.exclude,
                                         request.user_id, request.client,
                                         mark=(identity + b"/" + rid).hex())
        if request.client and isinstance(state, PusherChannels):  # announced here, once
            text = request.data if isinstance(request.data, str) else ""
            self.perform(state.client_hook(request.key, request.event, text,
                                           request.exclude, request.user_id))
        self.cluster.publish(request.key, message.encode(),
                             _Waiter(identity, rid, isinstance(state, PusherChannels)))
        self._wake()
        return PENDING

    def publish_done(self, waiter: object, counts: list[int] | None) -> None:
        """Redis answered a PUBLISH (None: it failed or timed out): its Done, with the
        channel's cluster-wide occupancy (`counts`, each instance's subscriptions)."""
        assert isinstance(waiter, _Waiter)
        if counts is None:
            self._send(waiter.identity, link.Done(waiter.rid, _UNAVAILABLE))
            return
        result: dict[str, Any] = {"members": bool(counts)}
        if waiter.pusher:
            result["subscription_count"] = sum(counts)
        self._send(waiter.identity, link.Done(waiter.rid, link.body(result)))

    def arrived(self, key: str, payload: bytes) -> None:
        """A message on a channel this shard listens to, from any instance (its own too)."""
        try:
            message = cluster_wire.decode(payload)
        except ClusterMessageError as exc:
            self.cluster_malformed += 1
            self.breach_line("cluster", f"dropped a pub/sub message on {key!r}: {exc}")
            return
        self.cluster_in += 1
        if isinstance(message, cluster_wire.Terminate):
            if message.origin != self._node:  # the origin's fronts did theirs already
                order = link.Terminate(message.app, message.user)
                for identity in list(self.fronts.identities.values()):
                    self._send(identity, order)
            return
        if isinstance(message, Heard):
            mirror = self._mirrors.get(key)
            if mirror is not None:
                self._tell(key, mirror.heard(message))
                self._answer_ready(key, mirror)
                self._applied(key, mirror)
            return
        state = self.channels.for_key(key)
        _, effects = state.trigger(key, message.event, message.data, message.exclude,
                                   now_ms=int(time.time() * 1000), user_id=message.user_id,
                                   client=message.client)
        # the mark goes with it: a front writes one trigger once, though its front re-sent
        # it after the publishing shard died (and that shard had published it)
        self.perform([replace(effect, mark=message.mark) if isinstance(effect, Broadcast)
                      else effect for effect in effects if not isinstance(effect, Hook)])

    def wants_occupancy(self, key: str) -> bool:
        """Whether a webhook of `key`'s app wants occupied / vacated (redis_scripts.COUNT)."""
        return "channel_occupied" in self.channels.for_key(key).hooks

    def occupancy(self, key: str, transition: int) -> None:
        """Redis says this instance's write changed `key`'s occupancy cluster-wide (COUNT's
        answer): 1 occupied, announced now; -1 vacant, announced if still so after the hold."""
        if transition == 1:
            self._cluster_hook(key, "channel_occupied")
        elif transition == -1 and self.wants_occupancy(key):
            self._later("vacant", key, ())

    def _later(self, kind: str, key: str, args: tuple[str, ...]) -> None:
        """A departure's check, `webhook_delivery.hold` seconds from now (at a sweep)."""
        due = time.monotonic() + self.config.webhook_delivery.hold
        self._checks.append((due, PresenceOp(kind, key, args, None)))

    def _cluster_hook(self, key: str, name: str, user_id: str | None = None) -> None:
        if name not in self.channels.for_key(key).hooks:
            return
        event: dict[str, Any] = {"name": name,
                                 "channel": self._names.get(key, name_of(key))}
        if user_id is not None:
            event["user_id"] = user_id
        self._hook(Hook(key, event))

    def subscribed(self, key: str) -> None:
        """Redis acknowledged the SUBSCRIBE of `key`: the output waiting for it may go."""
        assert self.cluster is not None
        for token in self.cluster.acknowledged(key):
            self.release(token)
        self._snapshot_if_needed(key)

    def pubsub_lost(self) -> None:
        """The pub/sub link dropped: every mirror waits for a new snapshot (the local
        members are then told the difference)."""
        for mirror in self._mirrors.values():
            mirror.reset()

    def cluster_replay(self) -> None:
        """Redis lost (or may have lost) this shard's state: every count and every local
        presence member again (the scripts are idempotent), and what Redis holds of this
        shard beyond them goes (`prune`)."""
        assert self.cluster is not None
        self.cluster.rewrite(self.local_counts())
        for key in list(self._mirrors):
            chan = self.channels.get(key)
            members = [m.state for m in chan.members.values()] if chan is not None else []
            for member in members:
                self._presence_join(member, None)
            self._presence_op("prune", key, tuple(m.sid for m in members), None)
            self._snapshot_if_needed(key)
        self._wake()

    def release_stale(self, keys: Sequence[str]) -> None:
        """A predecessor of this shard had members in `keys` that no front replayed: its
        counts and presence members there go."""
        assert self.cluster is not None
        self.cluster.rewrite([*self.local_counts(), *((key, 0) for key in keys)])
        for key in keys:
            self._presence_op("prune", key, (), None)
        self._wake()

    # -- presence across instances ---------------------------------------------------------

    def _mirror(self, key: str) -> Mirror:
        mirror = self._mirrors.get(key)
        if mirror is None:
            mirror = self._mirrors[key] = Mirror()
        self._snapshot_if_needed(key)
        return mirror

    def _snapshot_if_needed(self, key: str) -> None:
        """A mirror without its snapshot on a channel already listened to (a failed one is
        asked again with the next join or when Redis is back): ask for it."""
        assert self.cluster is not None
        mirror = self._mirrors.get(key)
        listening = self.cluster.listening.get(key)
        if (mirror is not None and not mirror.live and not mirror.asking
                and listening is not None and listening.acknowledged):
            mirror.asking = True
            catch_up = "1" if mirror.catch_up else "0"
            self._presence_op("snapshot", key, (catch_up, self._instance), mirror.generation)

    def _presence_join(self, member: MemberState, waiter: _PresenceJoin | None) -> None:
        state = self.channels.for_key(member.key)
        self._mirror(member.key)
        fresh = "1" if isinstance(state, ChannelTable) else "0"  # a Pushy id may be redrawn
        hooked = "1" if "member_added" in state.hooks else "0"
        record = link.body(member.record or {}).decode()
        self._presence_op("join", member.key, (state.presence_entity(member), record,
                                               member.sid, fresh, hooked), waiter)

    def _presence_op(self, kind: str, key: str, args: tuple[str, ...], waiter: object) -> None:
        assert self.cluster is not None
        self.cluster.presence(PresenceOp(kind, key, args, waiter))
        self._wake()

    def presence_done(self, op: PresenceOp, result: Any) -> None:
        """Redis answered a presence script (None: it failed or timed out)."""
        mirror = self._mirrors.get(op.key)
        if op.kind == "join":
            if result is None:
                if isinstance(op.waiter, _PresenceJoin):
                    self._refuse(op.waiter)
                return
            seq, added, entity = int(result[0]), int(result[1]), _text(result[2])
            waiter = op.waiter
            if isinstance(waiter, _PresenceJoin) and entity != op.args[0]:
                state = self.channels.for_key(op.key)
                chan = state.get(op.key)
                if (isinstance(state, ChannelTable) and chan is not None
                        and waiter.sid in chan.members):
                    state.rename(op.key, waiter.sid, entity)
            if added == 1:  # (2: back within its removal's hold, announced before)
                self._cluster_hook(op.key, "member_added", entity)
            if isinstance(waiter, _PresenceJoin) and mirror is not None:
                if mirror.wait(seq, waiter):
                    self._answer_join(waiter, mirror)
        elif op.kind == "leave":
            if result is not None and int(result[1]):
                self.presence_removed(op.key, _text(result[2]))
        elif op.kind == "snapshot" and mirror is not None:
            if op.waiter != mirror.generation:
                return  # asked before a gap: another is on its way
            mirror.asking = False
            if result is None:  # no list without Redis: the waiting joins fail, retryably
                for waiter in mirror.abandon():
                    assert isinstance(waiter, _PresenceJoin)
                    self._refuse(waiter)
                return
            seq, at, logged = int(result[0]), int(result[1]), int(result[2])
            log_end = 3 + logged
            pairs = [(_text(result[i]), _record(result[i + 1]))
                     for i in range(log_end, len(result) - 1, 2)]
            if mirror.catch_up:  # what the replayed members missed, in order, then the rest
                mirror.catch_up = False
                self._catch_up(op.key, at, seq, result[3:log_end])
            self._tell(op.key, mirror.snapshot(seq, pairs))
            self._answer_ready(op.key, mirror)
            self._applied(op.key, mirror)
        elif op.kind == "prune" and result is not None:
            for i in range(1, len(result) - 1, 2):
                self.presence_removed(op.key, _text(result[i]))
        elif op.kind == "gone" and result is not None and int(result):
            self._cluster_hook(op.key, "member_removed", op.args[0])
        elif op.kind == "vacant" and result is not None and int(result):
            self._cluster_hook(op.key, "channel_vacated")

    def presence_removed(self, key: str, entity: str) -> None:
        """`entity` left `key` (a leave, a prune, a sweep of a dead instance): its
        member_removed is announced if it is still gone after the hold."""
        if "member_removed" in self.channels.for_key(key).hooks:
            self._later("gone", key, (entity,))

    def _answer_join(self, waiter: _PresenceJoin, mirror: Mirror) -> None:
        """The mirror reached the join: its success, with the cluster-wide list."""
        state = self.channels.for_key(waiter.key)
        chan = state.get(waiter.key)
        member = chan.members.get(waiter.sid) if chan is not None else None
        if chan is None or member is None:
            return  # left meanwhile
        message = state.presence_success(chan, member.state, mirror.records())
        self._deliver(Joined(waiter.front, waiter.sid, member.state, message))

    def _answer_ready(self, key: str, mirror: Mirror) -> None:
        for waiter in mirror.ready():
            assert isinstance(waiter, _PresenceJoin)
            self._answer_join(waiter, mirror)

    def _refuse(self, waiter: _PresenceJoin) -> None:
        """A presence join without Redis: the member goes again, the client is told to retry."""
        state = self.channels.for_key(waiter.key)
        chan = state.get(waiter.key)
        if chan is None or waiter.sid not in chan.members:
            return
        display = chan.display
        self.perform(state.leave(waiter.sid, (waiter.key,)))
        self._deliver(Reply(waiter.front, waiter.sid, state.presence_refused(display)))

    def _applied(self, key: str, mirror: Mirror) -> None:
        """Redis learns the seq this shard's members were told up to (a successor catches
        them up from there)."""
        if mirror.seq is not None:
            assert self.cluster is not None
            self.cluster.applied[key] = mirror.seq

    def _catch_up(self, key: str, at: int, seq: int, log: list[Any]) -> None:
        """Tell the replayed members of `key` the changes of the log after `at` (their
        predecessor's last) up to the snapshot's `seq`."""
        if at < 0:
            return  # no predecessor applied anything here
        heard = []
        for raw in log:
            try:
                message = cluster_wire.decode(raw if isinstance(raw, bytes) else str(raw).encode())
            except ClusterMessageError:
                continue
            if isinstance(message, Heard) and at < message.seq <= seq:
                heard.append(message)
        if seq > at and (not heard or heard[0].seq != at + 1):
            self.presence_gaps += 1
            self.breach_line("cluster", f"presence of {key!r}: the log no longer holds every "
                             f"change since seq {at}; replayed members may miss some")
        self._tell(key, [Change(h.added, h.entity, h.record, h.sid) for h in heard])

    def _tell(self, key: str, changes: list[Change]) -> None:
        """Presence changes to this shard's members of `key`."""
        state = self.channels.for_key(key)
        chan = state.get(key)
        if chan is None:
            return
        for change in changes:
            message = state.presence_change(chan.display, change.record, change.added)
            # a member is never told of itself (after a gap it may be removed and added
            # again while Redis is refilled; its own connection keeps its place)
            exclude = change.exclude or next(
                (sid for sid, m in chan.members.items() if m.state.member_id == change.entity),
                None)
            self._deliver(Broadcast(key, chan.fronts(), message, exclude))

    def _deliver(self, effect: Effect) -> None:
        """An effect made here, sent as it is (no cluster step in between)."""
        if isinstance(effect, Broadcast):
            self.published += 1
            self.link_deliveries += len(effect.fronts)
        for front, frames in _messages(effect):
            identity = self.fronts.identity(front)
            if identity is not None:
                self._queue(identity, frames)

    def release(self, token: int) -> None:
        """What waited for `token` may go (Redis answered, failed or missed its deadline)."""
        if self._outbox.release(token):
            self._wake()

    def join_cluster(self, node: str, instance: str) -> None:
        """The shell is linked to Redis as `instance` of `node`: shard 0 listens for the
        other instances' terminate_connections."""
        assert self.cluster is not None
        self._node, self._instance = node, instance
        if self.index == 0:
            self.cluster.listen(cluster_wire.TERMINATE_KEY)
            self._wake()

    def local_counts(self) -> list[tuple[str, int]]:
        """Every channel with local members, with their number (to write them again)."""
        return [(chan.key, len(chan.members)) for chan in self.channels.all()]

    def take_turns(self) -> list[Turn]:
        """What the loop turns since the last call ask of Redis (made by `take`)."""
        turns, self._turns = self._turns, []
        return turns

    def _cluster_turn(self) -> None:
        assert self.cluster is not None
        now = time.monotonic()
        for key in self._touched:
            chan = self.channels.get(key)
            if chan is not None:
                self._names[key] = chan.display
            for token in self.cluster.changed(key, len(chan.members) if chan else 0, now):
                self._outbox.hold(token)
        self._touched.clear()
        turn = self.cluster.turn()
        for key in turn.unsubscribe:
            mirror = self._mirrors.pop(key, None)
            if mirror is not None:
                for waiter in mirror.abandon():
                    assert isinstance(waiter, _PresenceJoin)
                    self._refuse(waiter)
        if turn.token is not None:
            self._outbox.hold(turn.token)
        if turn:
            self._turns.append(turn)

    def _wake(self) -> None:
        if self.on_output is not None:
            self.on_output()

    def query_done(self, asked: Asked, found: Any, answered: bool = True) -> None:
        """Redis's answer to an HTTP API query (shard/redis_link.py: facts of the channels
        this shard owns, or of one channel, or the users), unless Redis did not answer."""
        request, waiter = asked.request, asked.waiter
        assert isinstance(request, link.Query) and isinstance(waiter, _Waiter)
        if not answered:
            result: dict[str, Any] = {"api_error": [503, "Redis unavailable, retry"]}
        else:
            try:
                result = self._cluster_answer(request, found)
            except ApiError as exc:
                result = {"api_error": [exc.status, exc.message]}
        self._send(waiter.identity, link.Done(waiter.rid, link.body(result)))

    def _cluster_answer(self, request: link.Query, found: Any) -> dict[str, Any]:
        """`found`: the Facts of the channels (a list), or of one channel (Facts or None),
        or the users (a list of ids; False: the channel is occupied but no presence one)."""
        pusher = request.app != PUSHY_APP
        info = tuple(request.info)
        if request.what == "channels":
            return {"channels": query.list_channels(found, request.prefix, info, pusher)}
        if request.what == "users":
            if found is False:
                raise ApiError(400, "users are only listed for presence channels")
            return {"users": [{"id": entity} for entity in found]}
        key = app_key(request.app, request.name)
        state = self.channels.apps.get(request.app)
        now_ms = int(time.time() * 1000)
        cached = state.cached(key, now_ms) if isinstance(state, PusherChannels) else None
        return {"channel": query.channel_info(found, info, cached, now_ms)}

    def _query(self, request: link.Query) -> dict[str, Any]:
        """The HTTP API's question, answered from this shard's channels of the app; a
        refusal is `{"api_error": [status, message]}` (core/channel_query.py)."""
        state = self.channels.apps.get(request.app)
        pusher = request.app != PUSHY_APP
        info = tuple(request.info)
        try:
            if request.what == "channels":
                found = [query.facts(c) for c in state.all()] if state is not None else []
                return {"channels": query.list_channels(found, request.prefix, info, pusher)}
            key = app_key(request.app, request.name)
            chan = state.get(key) if state is not None else None
            if request.what == "users":
                return {"users": query.users(chan)}
            now_ms = int(time.time() * 1000)
            cached = state.cached(key, now_ms) if isinstance(state, PusherChannels) else None
            found_one = query.facts(chan) if chan is not None else None
            return {"channel": query.channel_info(found_one, info, cached, now_ms)}
        except ApiError as exc:
            return {"api_error": [exc.status, exc.message]}

    def _command(self, front: int, request: link.Command) -> dict[str, Any]:
        handler = self.registry.get(request.name)
        if handler is None:  # fronts check names first; a mismatch of configs lands here
            return {"error": UnknownCommand().payload()}
        for state in self.channels.apps.values():  # read at use (SIGHUP)
            state.max_presence_bytes = self.config.limits.max_presence_data
        # with several instances every broadcast goes through Redis: as a Forward, which
        # the front sends back as a trigger of the channel's owner, which publishes it
        owns = self.owns if self.cluster is None else _nobody
        shard = ShardSide(self.channels, owns, int(time.time() * 1000))
        ctx = CommandContext(request.name, request.data, request.channel, request.sid, front,
                             shard=shard, address=request.address)
        forwards = []
        local: list[Effect] = []
        for effect in run_handler(handler, ctx):
            if isinstance(effect, Forward):
                forwards.append([effect.key, effect.event, effect.data, effect.exclude])
            else:
                local.append(effect)
        self.perform(local)
        return {"forward": forwards} if forwards else {}

    def _replayed(self, request: link.Trigger) -> bool:
        """A trigger whose signature this shard already accepted inside its window (the
        front sends `sig` only with limits.replay_protection on)."""
        if request.sig is None or request.ts is None:
            return False
        limit = self.config.limits.replay_cache_entries
        if not self.replay.seen(request.sig, request.ts, time.time(), limit):
            return False
        self.breach("replay", f"refused a replayed trigger on {request.key!r}")
        return True

    def owns(self, key: str) -> bool:
        return shard_for(key, self.config.workers) == self.index

    # -- effects out ---------------------------------------------------------------------

    def perform(self, effects: Sequence[Effect]) -> None:
        """Send the effects; every message is encoded first, so one that fails sends none."""
        planned = [(effect, _messages(effect)) for effect in effects]
        cluster = self.cluster is not None
        for effect, messages in planned:
            if isinstance(effect, Broadcast):
                self.published += 1
                self.link_deliveries += len(effect.fronts)
            elif isinstance(effect, Joined):
                self.subscriptions += 1
                if cluster:
                    self._touched.add(effect.member.key)
                    if effect.member.presence:  # its success waits for Redis
                        self._presence_join(effect.member, _PresenceJoin(
                            effect.front, effect.sid, effect.member.key))
                        continue
            elif isinstance(effect, Left) and cluster:
                self._touched.add(effect.key)
                if effect.key in self._mirrors:
                    self._presence_op("leave", effect.key, (effect.sid,), None)
            if isinstance(effect, Hook):
                if not (cluster and effect.event.get("name") in _CLUSTER_HOOKS):
                    self._hook(effect)
            for front, frames in messages:
                identity = self.fronts.identity(front)
                if identity is not None:
                    self._queue(identity, frames)

    def _hook(self, effect: Hook) -> None:
        if not self._hooks and not self._outbox and self.on_output is not None:
            self.on_output()
        self._hooks.append((app_of(effect.key), effect.event))

    def _send(self, identity: bytes,
              message: link.Welcome | link.Pong | link.Done | link.Terminate) -> None:
        if isinstance(message, link.Pong) and not self.redis_up:
            message = link.Pong(redis_down=True)
        self._queue(identity, message.encode())

    def _queue(self, identity: bytes, frames: list[bytes]) -> None:
        if self._outbox.queue(identity, frames) and self.on_output is not None:
            self.on_output()

    # -- observability -------------------------------------------------------------------

    def breach(self, limit: str, detail: str) -> None:
        """Count a breach of config.limits.`limit` and log it (one line per limit a second)."""
        self.metrics.inc("pushy_limit_breaches_total", (("limit", limit),))
        self.breach_line(limit, f"limit {limit}: {detail}")

    def breach_line(self, name: str, detail: str) -> None:
        """A warning, at most one line per `name` a second (the rest are counted)."""
        line = self._breach_log.line(name, time.monotonic(), f"shard {self.index}: {detail}")
        if line is not None:
            log.warning("%s", line)

    def _channel_changed(self, name: str, created: bool) -> None:
        if created:
            self.metrics.inc("pushy_channels_created_total")
            log.debug("shard %d: channel %s created", self.index, name)
        else:
            self.metrics.inc("pushy_channels_removed_total")
            log.debug("shard %d: channel %s removed", self.index, name)

    def stats(self) -> list[metrics.Sample]:
        """This shard's part of /metrics: its counters, and gauges counted now."""
        return [
            *self.metrics,
            *metrics.channel_gauges(self.channels.all()),
            ("pushy_events_published_total", (), float(self.published)),
            ("pushy_link_deliveries_total", (), float(self.link_deliveries)),
            ("pushy_subscriptions_total", (), float(self.subscriptions)),
            ("pushy_link_send_failures_total", (("role", "shard"),), float(self.dropped_output)),
            ("pushy_webhook_dropped_total", (("reason", "link"),), float(self.hooks_dropped)),
            *self._cluster_stats(),
            *(self.extra_stats() if self.extra_stats is not None else ()),
        ]

    def _cluster_stats(self) -> list[metrics.Sample]:
        if self.cluster is None:
            return []
        return [("pushy_cluster_messages_in_total", (), float(self.cluster_in)),
                ("pushy_cluster_malformed_total", (), float(self.cluster_malformed)),
                ("pushy_cluster_presence_gaps_total", (), float(self.presence_gaps)),
                ("pushy_cluster_subscriptions", (), float(len(self.cluster.listening)))]


def _hook_events(config: Config) -> dict[str, frozenset[str]]:
    """Per channel namespace with webhooks: the events its channel state reports."""
    wanted: dict[str, frozenset[str]] = {}
    for app in config.api_apps:
        events = hook_events(event for hook in app.webhooks for event in hook.events)
        if events:
            wanted[config.namespace(app)] = events
    return wanted


def _messages(effect: Effect) -> list[tuple[int, list[bytes]]]:
    """An effect as the link messages it sends: (front, frames) pairs."""
    if isinstance(effect, Broadcast):
        deliver = link.Deliver(effect.key, effect.exclude, effect.message, effect.mark).encode()
        return [(front, deliver) for front in effect.fronts]
    if isinstance(effect, Reply):
        return [(effect.front, link.Reply(effect.sid, effect.message).encode())]
    if isinstance(effect, Joined):
        return [(effect.front, link.Joined(effect.member, effect.message).encode())]
    if isinstance(effect, Left):
        return [(effect.front, link.Left(effect.sid, effect.key, effect.message).encode())]
    return []


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogatepass")
    return str(value)


def _record(value: object) -> dict[str, Any]:
    """A presence record as Redis keeps it (JSON text); {} for one that does not decode."""
    try:
        record = link.load(value if isinstance(value, bytes) else str(value).encode())
    except LinkError:
        return {}
    return record if isinstance(record, dict) else {}


def _nobody(key: str) -> bool:
    return False
