"""Robot-side server: runs a `RobotInterface` at a fixed rate and speaks the bridge protocol (no JAX).

Each period: apply the freshest valid action (else hold it until its `valid_until`, else the safe action),
read the state, publish it. No fresh action for `watchdog_periods` periods, a bad action message, a lost
client or a robot error latch the safe action (mode "safe") until the client sends `start` or `reset`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import select
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from hardware import endpoints, protocol
from hardware.protocol import ProtocolError
from hardware.robot import requests
from hardware.robot.interface import RobotInterface, RobotState
from hardware.robot.loop_stats import LoopStats
from hardware.robot.session import Request, ServerInfo, Session

if TYPE_CHECKING:
    from hardware.robot.onboard import OnboardRunner


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"  # control address; state on PORT+1, actions on PORT+2
    rate_hz: float | None = None  # control rate, Hz (None: the robot spec's rate)
    watchdog_periods: int = 5  # periods without a fresh action before the safe action latches
    max_action_age_s: float = 0.2  # an action expires at most this long after the state it answers, s
    key_dir: str | None = None  # CURVE key directory (None: no encryption)
    # on-board policy run in mode "onboard": an ONNX file, or a shielded policy's directory (saferl.export.shielded)
    onboard_policy: str | None = None
    max_duration_s: float | None = None  # stop serving after this long (tests, benchmarks)
    # SCHED_FIFO priority 1-99 for the control loop and ZeroMQ's I/O thread (Linux; needs root, CAP_SYS_NICE or
    # an rtprio limit): other processes on the robot computer can then no longer delay a period or a reply
    realtime_priority: int | None = None

    def __post_init__(self) -> None:
        endpoints.parse(self.bind)
        if self.rate_hz is not None and not 0 < self.rate_hz <= 10_000:
            raise ValueError(f"rate_hz must be in (0, 10000], got {self.rate_hz}")
        if self.watchdog_periods < 1:
            raise ValueError(f"watchdog_periods must be >= 1, got {self.watchdog_periods}")
        if not self.max_action_age_s > 0:
            raise ValueError(f"max_action_age_s must be > 0, got {self.max_action_age_s}")
        if self.realtime_priority is not None and not 1 <= self.realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be in [1, 99], got {self.realtime_priority}")


_STAMPS_KEPT = 4096  # publish times of this many recent states are kept to match actions to


@dataclasses.dataclass
class _PendingAction:
    action: np.ndarray  # [action_dim]
    state_seq: int  # the state it answers
    deadline_ns: int  # robot clock: not applied after this


def _enter_realtime(priority: int) -> None:
    """Run this thread (and threads it starts later) under SCHED_FIFO at `priority`."""
    if not hasattr(os, "sched_setscheduler"):
        raise ValueError("realtime_priority needs Linux (os.sched_setscheduler)")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise ValueError(
            f"realtime_priority {priority} refused: needs root, CAP_SYS_NICE or an rtprio limit "
            "(ulimit -r); run without it"
        ) from None


class RobotServer:
    """Owns the sockets and the control loop. Call `serve()` (blocks) in the robot's own process."""

    def __init__(self, robot: RobotInterface, config: ServerConfig):
        self.robot, self.config = robot, config
        self.spec = robot.spec()
        self._obs_dtype = protocol.DTYPES[self.spec.obs_dtype]
        self._action_dtype = protocol.DTYPES[self.spec.action_dtype]
        self.period_ns = int(1e9 / (config.rate_hz or self.spec.rate_hz))
        self.session = Session(
            watchdog_periods=config.watchdog_periods, max_action_age_ns=int(config.max_action_age_s * 1e9)
        )
        self.stats = LoopStats()
        self._seq = 0  # sequence number of the last published state
        self._state_stamps: dict[int, int] = {}  # recent state seq -> publish time, ns
        self._pending: _PendingAction | None = None
        self._held: _PendingAction | None = None
        self._periods_without_fresh = 0
        self._last: RobotState | None = None
        self._running = True
        self._onboard: OnboardRunner | None = None  # obs -> action, when loaded
        if config.onboard_policy:
            from hardware.robot.onboard import load_onboard  # onnxruntime only when asked for

            self._onboard = load_onboard(config.onboard_policy, self.spec)
        if config.realtime_priority is not None:
            _enter_realtime(config.realtime_priority)  # before the sockets: ZeroMQ's I/O thread inherits it
        self._open_sockets()
        _, port = endpoints.parse(config.bind)
        self.info = ServerInfo(
            spec=self.spec,
            rate_hz=1e9 / self.period_ns,
            state_port=port + 1,
            action_port=port + 2,
            onboard=self._onboard is not None,
            curve=self.security is not None,
        )

    # ---- sockets ------------------------------------------------------------------------------
    def _open_sockets(self) -> None:
        addresses = endpoints.plane_addresses(self.config.bind)
        self.context = zmq.Context()
        self.security = None
        if self.config.key_dir:
            from hardware.security import ServerSecurity

            self.security = ServerSecurity(self.context, self.config.key_dir)
        self.control = self._socket(zmq.REP, addresses["control"])
        self.state_pub = self._socket(zmq.PUB, addresses["state"])
        self.action_pull = self._socket(zmq.PULL, addresses["action"], conflate=True)
        self.monitor = self.action_pull.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        self._handlers = (
            (self.monitor, self._on_monitor_event),
            (self.action_pull, self._on_action),
            (self.control, self._on_request),
        )
        self._fds = [cast(int, sock.getsockopt(zmq.FD)) for sock, _ in self._handlers]  # an int option (POSIX)

    def _socket(self, kind: int, address: str, conflate: bool = False) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * protocol.MAX_MESSAGE_BYTES)  # libzmq drops peers sending more
        if conflate:
            sock.setsockopt(zmq.CONFLATE, 1)  # only the freshest action counts
        if kind == zmq.PUB:
            sock.setsockopt(zmq.SNDHWM, 4)
        if self.security is not None:
            self.security.apply(sock)
        sock.bind(address)
        return sock

    def close(self) -> None:
        for sock in (self.monitor, self.control, self.state_pub, self.action_pull):
            sock.close(linger=0)
        if self.security is not None:
            self.security.close()
        self.context.term()

    # ---- the loop -----------------------------------------------------------------------------
    def serve(self, ready: Callable[[], None] | None = None) -> LoopStats:
        """Run the control loop until SIGINT/SIGTERM, `max_duration_s`, or `request_stop()`."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no signal handlers
                signal.signal(sig, lambda *_: self.request_stop())
        self._last = self._guarded(self.robot.read_state, "read_state")
        gc.collect()
        gc.freeze()  # objects alive now (robot, sockets, policy) are never scanned again: shorter GC pauses
        if ready is not None:
            ready()
        start = next_tick = protocol.now_ns()
        end = start + int(self.config.max_duration_s * 1e9) if self.config.max_duration_s else None
        try:
            while self._running and (end is None or next_tick < end):
                self._service_until(next_tick)
                self._tick(protocol.now_ns())
                self.stats.periods += 1
                next_tick += self.period_ns
                late = protocol.now_ns() - next_tick
                if late > 0:  # the period's work ran past the next deadline: skip the missed ticks
                    self.stats.record_overrun(late)
                    next_tick += (late // self.period_ns + 1) * self.period_ns
        finally:
            gc.unfreeze()
            self._guarded(lambda: self.robot.apply_action(self.robot.safe_action()), "apply_action")
            self._guarded(self.robot.close, "close")
            self.close()
        return self.stats

    def request_stop(self) -> None:
        self._running = False

    def _service_until(self, deadline_ns: int) -> None:
        """Handle incoming messages as they arrive until `deadline_ns`.

        Waits in `select` on the sockets' ZMQ_FD notification descriptors, whose timeout has microsecond
        resolution (zmq_poll's has milliseconds): an action is picked up within the wake-up latency of the
        OS, not a polling slice. ZMQ_FD is edge-triggered, so each socket is drained (ZMQ_EVENTS) before
        every wait.
        """
        handlers = self._handlers
        while True:
            for sock, handler in handlers:
                while cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # an int option
                    handler()
            remaining = deadline_ns - protocol.now_ns()
            if remaining <= 0:
                return
            select.select(self._fds, (), (), remaining / 1e9)

    def _tick(self, now: int) -> None:
        session = self.session
        if session.mode == "running":
            action, source, action_seq = self._remote_action(now)
        elif session.mode == "onboard":
            action, source, action_seq = self._onboard_action()
        elif session.mode == "safe":
            action, source, action_seq = self.robot.safe_action(), "safe", -1
        else:
            action, source, action_seq = None, "safe", -1
        applied = False
        if action is None:
            self._guarded(self.robot.idle, "idle")
            action = self.robot.safe_action()
        elif self._guarded(lambda: self.robot.apply_action(action), "apply_action") is not False:
            session.step += 1
            applied = True
        state = self._guarded(self.robot.read_state, "read_state")
        if isinstance(state, RobotState):
            self._last = state
            if applied and self._onboard is not None:  # the episode's cost, whoever chose the action
                self._onboard.observe_cost(float(state.cost))
        if self._latest.done and session.mode in ("running", "onboard", "safe") and session.step > 0:
            session.mode, session.ready = "idle", False  # the episode is over: a new one needs `reset`
        self._publish(action, source, action_seq)

    def _publish(self, action: np.ndarray, source: str, action_seq: int) -> None:
        self._seq += 1
        stamp = protocol.now_ns()
        self._state_stamps[self._seq] = stamp
        self._state_stamps.pop(self._seq - _STAMPS_KEPT, None)
        session, spec, last = self.session, self.spec, self._latest
        try:
            obs = protocol.check_array(
                np.asarray(last.obs, dtype=self._obs_dtype), spec.obs_shape, spec.obs_dtype, "state obs"
            )
            body: dict[str, Any] = {
                "obs": obs,
                "reward": float(last.reward),
                "cost": float(last.cost),
                "done": bool(last.done),
                "mode": session.mode,
                "episode": session.episode,
                "step": session.step,
                "action": np.asarray(action, dtype=self._action_dtype),
                "action_source": source,
                "action_seq": action_seq,
                "fault": session.fault,
            }
            if not (math.isfinite(body["reward"]) and math.isfinite(body["cost"])):
                raise ProtocolError("non_finite", f"reward {body['reward']}, cost {body['cost']}")
            # every field is now known to be valid: skip the encoder's full re-validation on this hot path
            raw = protocol.encode("state", self._seq, body, t_ns=stamp, check=False)
        except (ProtocolError, ValueError, TypeError) as err:  # the robot produced a bad reading: fault
            self._enter_safe(f"robot_error: bad state ({err})")
            return
        with contextlib.suppress(zmq.Again):  # no subscriber keeping up: the state is dropped, never queued
            self.state_pub.send(raw, zmq.NOBLOCK)

    # ---- choosing the action --------------------------------------------------------------------
    def _remote_action(self, now: int) -> tuple[np.ndarray | None, str, int]:
        pending, self._pending = self._pending, None
        watchdog_periods = self.session.watchdog_periods
        if pending is None and self._held is None:  # no action since `start` yet: wait (watchdog counts)
            self._periods_without_fresh += 1
            if self._periods_without_fresh >= watchdog_periods:
                self._enter_safe(f"watchdog: no first action within {self._periods_without_fresh} periods")
                return self.robot.safe_action(), "safe", -1
            return None, "safe", -1
        if pending is not None and pending.deadline_ns >= now:
            self._held, self._periods_without_fresh = pending, 0
            self.stats.actions_applied += 1
            return pending.action, "policy", pending.state_seq
        if pending is not None:
            self.stats.count_drop("stale")
        self._periods_without_fresh += 1
        if self._periods_without_fresh >= watchdog_periods:
            self._enter_safe(f"watchdog: no fresh action for {self._periods_without_fresh} periods")
            return self.robot.safe_action(), "safe", -1
        if self._held is not None and self._held.deadline_ns >= now:
            return self._held.action, "hold", self._held.state_seq
        return self.robot.safe_action(), "safe", -1

    def _onboard_action(self) -> tuple[np.ndarray, str, int]:
        try:
            if self._onboard is None:
                raise RuntimeError("no on-board policy loaded")
            action = self._onboard(np.asarray(self._latest.obs))
            protocol.check_array(
                action, self.spec.action_shape, self.spec.action_dtype, "onboard action", self.spec.low, self.spec.high
            )
        except Exception as err:  # noqa: BLE001 — any failure of the on-board policy means: be safe
            self._enter_safe(f"onboard_error: {err}")
            return self.robot.safe_action(), "safe", -1
        self.stats.actions_applied += 1
        return action, "onboard", self._seq

    def _enter_safe(self, reason: str) -> None:
        session = self.session
        if session.mode in ("running", "onboard"):
            session.mode, session.fault = "safe", reason
            self.stats.faults += 1
            self.safe_now()

    # ---- what requests may do to the robot (RobotCalls) -----------------------------------------
    def safe_now(self) -> None:
        """Command the safe action immediately (not waiting for the next period)."""
        self._guarded(lambda: self.robot.apply_action(self.robot.safe_action()), "apply_action", fault=False)

    def reset(self, seed: int | None) -> np.ndarray | None:
        state = self._guarded(lambda: self.robot.reset(seed), "reset", fault=False)
        if not isinstance(state, RobotState):
            return None
        self._last = state
        if self._onboard is not None:
            self._onboard.reset()  # a new episode: nothing spent yet
        return np.asarray(state.obs)

    def set_parameter(self, name: str, value: float) -> None:
        self.robot.set_parameter(name, value)

    # ---- incoming messages ----------------------------------------------------------------------
    def _on_action(self) -> None:
        try:
            raw = self.action_pull.recv(zmq.NOBLOCK, copy=True)
        except zmq.Again:
            return
        received = protocol.now_ns()
        try:
            self._accept_action(protocol.decode(raw, expected=("action",)), received)
        except ProtocolError as err:
            if err.code in ("stale", "out_of_order"):
                self.stats.count_drop(err.code)
            else:
                self.stats.count_bad(err.code)
                self._enter_safe(f"bad_message: {err}")

    def _accept_action(self, msg: protocol.Message, received: int) -> None:
        body = msg.body
        action = protocol.check_array(
            body["action"], self.spec.action_shape, self.spec.action_dtype, "action", self.spec.low, self.spec.high
        )
        state_seq = body["state_seq"]
        stamp = self._state_stamps.get(state_seq)
        if state_seq > self._seq or (stamp is None and state_seq > self._seq - _STAMPS_KEPT):
            raise ProtocolError("bad_request", f"action answers state {state_seq}, never published")
        newest = self._pending or self._held
        if stamp is None or (newest is not None and state_seq <= newest.state_seq):
            raise ProtocolError("out_of_order", f"action answers state {state_seq}, already superseded")
        deadline = min(body["valid_until_ns"], stamp + self.session.max_action_age_ns)
        if deadline < received:
            raise ProtocolError(
                "stale", f"action for state {state_seq} expired {(received - deadline) / 1e6:.2f} ms ago"
            )
        self.stats.record_latency(received - stamp)
        self._pending = _PendingAction(np.array(action), state_seq, deadline)

    def _on_monitor_event(self) -> None:
        try:
            event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
        except (zmq.Again, ValueError):
            return
        if event == zmq.EVENT_DISCONNECTED:
            self.stats.client_disconnects += 1
            if self.session.mode == "running":
                self._enter_safe("client_lost: the action connection closed")
        else:
            self.stats.auth_failures += 1

    def _on_request(self) -> None:
        try:
            parts = self.control.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            if len(parts) != 1:
                raise ProtocolError("malformed", f"expected 1 frame, got {len(parts)}")
            msg = protocol.decode(parts[0], expected=protocol.REQUEST_TYPES)
            request = Request(message=msg, info=self.info, robot=self, counters=self._counters, state_seq=self._seq)
            session, data = requests.handle(self.session, request)
            reply = protocol.encode("reply", msg.seq, {"request": msg.type, "data": data})
        except ProtocolError as err:
            self.stats.count_bad(err.code)
            seq = protocol.peek_seq(parts[0]) if len(parts) == 1 else 0  # echo it if the envelope has one
            message = str(err)[: protocol.MAX_STRING_CHARS]  # a reply the protocol's own limits accept
            reply = protocol.encode("error", seq, {"code": err.code, "message": message})
        else:
            if session.starts != self.session.starts:  # a new start: actions queued before it don't count
                self._pending = self._held = None
                self._periods_without_fresh = 0
            self.session = session
        self.control.send(reply)

    def _counters(self) -> dict[str, Any]:
        """What `status` reports besides the session: the loop's counters and, with a shielded on-board policy,
        the shield's episode counters."""
        counters = self.stats.to_wire()
        shield = self._onboard.shield_status() if self._onboard is not None else None
        if shield is not None:
            counters["shield"] = shield
        return counters

    @property
    def _latest(self) -> RobotState:
        """The robot's latest state: `serve` reads one before its first tick, so the loop always has one."""
        if self._last is None:
            raise RuntimeError("no robot state yet: serve() reads one before its first tick")
        return self._last

    def _guarded(self, call: Callable[[], Any], what: str, fault: bool = True) -> Any:
        """Call the robot; an exception becomes a fault (safe mode), never a crash. Returns False on error."""
        try:
            return call()
        except Exception as err:  # noqa: BLE001 — user robot code may raise anything
            self.stats.robot_errors += 1
            if fault:
                self._enter_safe(f"robot_error: {what} raised {type(err).__name__}: {err}")
            return False
