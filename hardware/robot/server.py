"""Robot-side server: runs a `RobotInterface` at a fixed rate and speaks the bridge protocol (no JAX).

Each period: apply the freshest valid action (else hold it until its `valid_until`, else the safe action),
read the state, publish it. No fresh action for `watchdog_periods` periods, a bad action message, a lost
client or a robot error latch the safe action (mode "safe") until the client sends `start` or `reset`.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Any, Callable

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from hardware import endpoints, protocol
from hardware.protocol import ProtocolError
from hardware.robot.interface import RobotInterface, RobotState
from hardware.robot.loop_stats import LoopStats


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"  # control address; state on PORT+1, actions on PORT+2
    rate_hz: float | None = None  # control rate, Hz (None: the robot spec's rate)
    watchdog_periods: int = 5  # periods without a fresh action before the safe action latches
    max_action_age_s: float = 0.2  # an action expires at most this long after the state it answers, s
    key_dir: str | None = None  # CURVE key directory (None: no encryption)
    onboard_policy: str | None = None  # ONNX policy file run on board in mode "onboard"
    max_duration_s: float | None = None  # stop serving after this long (tests, benchmarks)

    def __post_init__(self) -> None:
        endpoints.parse(self.bind)
        if self.rate_hz is not None and not 0 < self.rate_hz <= 10_000:
            raise ValueError(f"rate_hz must be in (0, 10000], got {self.rate_hz}")
        if self.watchdog_periods < 1:
            raise ValueError(f"watchdog_periods must be >= 1, got {self.watchdog_periods}")
        if not self.max_action_age_s > 0:
            raise ValueError(f"max_action_age_s must be > 0, got {self.max_action_age_s}")


@dataclasses.dataclass
class _PendingAction:
    action: np.ndarray  # [action_dim]
    state_seq: int  # the state it answers
    deadline_ns: int  # robot clock: not applied after this


class RobotServer:
    """Owns the sockets and the control loop. Call `serve()` (blocks) in the robot's own process."""

    def __init__(self, robot: RobotInterface, config: ServerConfig):
        self.robot, self.config = robot, config
        self.spec = robot.spec()
        self.period_ns = int(1e9 / (config.rate_hz or self.spec.rate_hz))
        self.watchdog_periods = config.watchdog_periods
        self.max_action_age_ns = int(config.max_action_age_s * 1e9)
        self.stats = LoopStats()
        self.mode, self.fault, self.episode, self.step, self.ready = "idle", "", 0, 0, False
        self._seq = 0  # sequence number of the last published state
        self._state_stamps: dict[int, int] = {}  # recent state seq -> publish time, ns
        self._pending: _PendingAction | None = None
        self._held: _PendingAction | None = None
        self._periods_without_fresh = 0
        self._last: RobotState | None = None
        self._running = True
        self._onboard = None
        if config.onboard_policy:
            from hardware.robot.onboard import OnboardPolicy  # onnxruntime only when asked for
            self._onboard = OnboardPolicy(config.onboard_policy, self.spec)
        self._open_sockets()

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
        self.monitor = self.action_pull.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        self.poller = zmq.Poller()
        for sock in (self.control, self.action_pull, self.monitor):
            self.poller.register(sock, zmq.POLLIN)

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
            try:
                signal.signal(sig, lambda *_: self.request_stop())
            except ValueError:  # not the main thread
                pass
        self._last = self._guarded(self.robot.read_state, "read_state")
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
            self._guarded(lambda: self.robot.apply_action(self.robot.safe_action()), "apply_action")
            self._guarded(self.robot.close, "close")
            self.close()
        return self.stats

    def request_stop(self) -> None:
        self._running = False

    def _service_until(self, deadline_ns: int) -> None:
        """Handle incoming messages until `deadline_ns`, sleeping in short slices for sub-ms precision."""
        while True:
            remaining = deadline_ns - protocol.now_ns()
            if remaining <= 0:
                return
            timeout_ms = remaining // 1_000_000 - 1 if remaining > 2_000_000 else 0
            events = dict(self.poller.poll(timeout_ms))
            if self.monitor in events:
                self._on_monitor_event()
            if self.action_pull in events:
                self._on_action()
            if self.control in events:
                self._on_request()
            if not events and timeout_ms == 0:
                time.sleep(min(remaining, 100_000) / 1e9)

    def _tick(self, now: int) -> None:
        if self.mode == "running":
            action, source, action_seq = self._remote_action(now)
        elif self.mode == "onboard":
            action, source, action_seq = self._onboard_action()
        elif self.mode == "safe":
            action, source, action_seq = self.robot.safe_action(), "safe", -1
        else:
            action, source, action_seq = None, "safe", -1
        if action is None:
            self._guarded(self.robot.idle, "idle")
            action = self.robot.safe_action()
        elif self._guarded(lambda: self.robot.apply_action(action), "apply_action") is not False:
            self.step += 1
        state = self._guarded(self.robot.read_state, "read_state")
        if isinstance(state, RobotState):
            self._last = state
        if self._last.done and self.mode in ("running", "onboard", "safe") and self.step > 0:
            self.mode, self.ready = "idle", False  # the episode is over: a new one needs `reset`
        self._publish(action, source, action_seq)

    def _publish(self, action: np.ndarray, source: str, action_seq: int) -> None:
        self._seq += 1
        stamp = protocol.now_ns()
        self._state_stamps[self._seq] = stamp
        self._state_stamps.pop(self._seq - 4096, None)
        body = {"obs": np.asarray(self._last.obs, dtype=protocol.DTYPES[self.spec.obs_dtype]),
                "reward": float(self._last.reward), "cost": float(self._last.cost), "done": bool(self._last.done),
                "mode": self.mode, "episode": self.episode, "step": self.step,
                "action": np.asarray(action, dtype=protocol.DTYPES[self.spec.action_dtype]),
                "action_source": source, "action_seq": action_seq, "fault": self.fault}
        try:
            self.state_pub.send(protocol.encode("state", self._seq, body, t_ns=stamp), zmq.NOBLOCK)
        except ProtocolError as err:  # the robot produced a bad reading (NaN, wrong shape): fault
            self._enter_safe(f"robot_error: bad state ({err})")
        except zmq.Again:
            pass

    # ---- choosing the action --------------------------------------------------------------------
    def _remote_action(self, now: int) -> tuple[np.ndarray, str, int]:
        pending, self._pending = self._pending, None
        if pending is None and self._held is None:  # no action since `start` yet: wait (watchdog counts)
            self._periods_without_fresh += 1
            if self._periods_without_fresh >= self.watchdog_periods:
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
        if self._periods_without_fresh >= self.watchdog_periods:
            self._enter_safe(f"watchdog: no fresh action for {self._periods_without_fresh} periods")
            return self.robot.safe_action(), "safe", -1
        if self._held is not None and self._held.deadline_ns >= now:
            return self._held.action, "hold", self._held.state_seq
        return self.robot.safe_action(), "safe", -1

    def _onboard_action(self) -> tuple[np.ndarray, str, int]:
        try:
            action = self._onboard(np.asarray(self._last.obs))
            protocol.check_array(action, self.spec.action_shape, self.spec.action_dtype, "onboard action",
                                 self.spec.low, self.spec.high)
        except Exception as err:  # noqa: BLE001 — any failure of the on-board policy means: be safe
            self._enter_safe(f"onboard_error: {err}")
            return self.robot.safe_action(), "safe", -1
        self.stats.actions_applied += 1
        return action, "onboard", self._seq

    def _enter_safe(self, reason: str) -> None:
        if self.mode in ("running", "onboard"):
            self.mode, self.fault = "safe", reason
            self.stats.faults += 1
            self.robot_safe_now()

    def robot_safe_now(self) -> None:
        """Command the safe action immediately (not waiting for the next period)."""
        self._guarded(lambda: self.robot.apply_action(self.robot.safe_action()), "apply_action", fault=False)

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
        action = protocol.check_array(body["action"], self.spec.action_shape, self.spec.action_dtype, "action",
                                      self.spec.low, self.spec.high)
        state_seq = body["state_seq"]
        stamp = self._state_stamps.get(state_seq)
        if state_seq > self._seq or (stamp is None and state_seq > self._seq - 4096):
            raise ProtocolError("bad_request", f"action answers state {state_seq}, never published")
        newest = self._pending or self._held
        if stamp is None or (newest is not None and state_seq <= newest.state_seq):
            raise ProtocolError("out_of_order", f"action answers state {state_seq}, already superseded")
        deadline = min(body["valid_until_ns"], stamp + self.max_action_age_ns)
        if deadline < received:
            raise ProtocolError("stale", f"action for state {state_seq} expired {(received - deadline) / 1e6:.2f} ms ago")
        self.stats.record_latency(received - stamp)
        self._pending = _PendingAction(np.array(action), state_seq, deadline)

    def _on_monitor_event(self) -> None:
        try:
            event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
        except (zmq.Again, ValueError):
            return
        if event == zmq.EVENT_DISCONNECTED:
            self.stats.client_disconnects += 1
            if self.mode == "running":
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
            reply = protocol.encode("reply", msg.seq, {"request": msg.type, "data": self._handle(msg)})
        except ProtocolError as err:
            self.stats.count_bad(err.code)
            reply = protocol.encode("error", 0, {"code": err.code, "message": str(err)})
        self.control.send(reply)

    def _handle(self, msg: protocol.Message) -> dict[str, Any]:
        from hardware.robot.requests import handle_request  # keeps this module short
        return handle_request(self, msg)

    def _guarded(self, call: Callable[[], Any], what: str, fault: bool = True) -> Any:
        """Call the robot; an exception becomes a fault (safe mode), never a crash. Returns False on error."""
        try:
            return call()
        except Exception as err:  # noqa: BLE001 — user robot code may raise anything
            self.stats.robot_errors += 1
            if fault:
                self._enter_safe(f"robot_error: {what} raised {type(err).__name__}: {err}")
            return False
