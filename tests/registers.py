"""The registers the tests' workers write to, to read a case whole as the
API does (a case lets go of the events its register has confirmed)."""

from __future__ import annotations

import contextlib

from register import Register, RegisterUnavailableError
from workflows.messages import CaseState

# Every register a test's worker wrote to, newest last (in a module of
# its own: pytest loads conftest.py under a second name from the tests' own
# imports of it).
REGISTERS: list[Register] = []


def remember(register: Register) -> Register:
    """A register a test's worker writes to, for ``whole`` to read."""
    if register not in REGISTERS:
        REGISTERS.append(register)
    return register


def whole(state: CaseState) -> CaseState:
    """The case as the API shows it: what it holds, with the events and notes
    it has let go to the register it writes to."""
    for register in reversed(REGISTERS):
        with contextlib.suppress(RegisterUnavailableError):  # one a test has closed
            if register.recorded_seq(state.reference) is not None:
                return register.whole(state)
    return state
