"""User-facing error type: library code raises it, only the CLI turns it into one line and an exit code."""


class UserError(Exception):
    """Bad input from a user (config, CLI argument, env name, checkpoint, run dir).

    The message says what was wrong, the value given and what is allowed.
    """


class NonFiniteError(RuntimeError):
    """NaN/Inf detected during training; `quantity` and `step` say where it arose."""

    def __init__(self, quantity: str, step: int, detail: str = ""):
        self.quantity = quantity
        self.step = step
        super().__init__(f"non-finite value in {quantity} at step {step}" + (f": {detail}" if detail else ""))
