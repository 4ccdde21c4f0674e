"""One parsed copy of each policy snapshot for all the cases a worker holds.

Every case carries the policy it was raised under in its input (DESIGN.md
section 4), so a worker holding a thousand Merton cases would otherwise keep
a thousand equal copies of Merton's policy, about 48 KiB each. A
policy is frozen, so a case can use any copy equal to its own: the workflow
swaps its freshly decoded copy for the shared one and lets its own go.

The workflow imports this module through the sandbox's pass-through, so the
cache is shared by all cases in the worker process. Sharing an equal,
immutable value changes nothing a case does, on replay or otherwise.
"""

from __future__ import annotations

import threading

from policies.model import Policy

# Different texts under one id and version are rare (a policy file being
# rehearsed while it is edited): keep a few, never an unbounded number.
MAX_VARIANTS = 8

_lock = threading.Lock()
_shared: dict[tuple[str, str], list[Policy]] = {}


def shared(policy: Policy) -> Policy:
    """The worker's copy of a policy equal to ``policy`` (``policy`` itself
    the first time it is seen)."""
    key = (policy.id, str(policy.version))
    with _lock:
        variants = _shared.setdefault(key, [])
        for known in variants:
            if known is policy or known == policy:
                return known
        if len(variants) < MAX_VARIANTS:
            variants.append(policy)
    return policy
