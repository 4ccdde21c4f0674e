"""One parsed copy of each policy per worker (workflows/snapshots.py)."""

from __future__ import annotations

from policies.loader import get_policy
from policies.model import Policy
from workflows import snapshots


def decoded(policy: Policy) -> Policy:
    """A fresh copy, as each case's input decodes its own."""
    return Policy.model_validate_json(policy.model_dump_json())


def test_equal_policies_share_one_copy() -> None:
    merton = get_policy("merton")
    first = snapshots.shared(decoded(merton))
    second = decoded(merton)
    assert second is not first
    assert snapshots.shared(second) is first


def test_a_different_text_under_the_same_id_and_version_is_not_shared() -> None:
    merton = decoded(get_policy("merton"))
    edited = merton.model_copy(update={"partnership": merton.partnership + " (draft)"})
    kept = snapshots.shared(merton)
    assert snapshots.shared(edited) is edited
    assert snapshots.shared(edited) is not kept
    assert snapshots.shared(edited) == edited


def test_variants_are_bounded() -> None:
    wirral = decoded(get_policy("wirral"))
    variants = [
        wirral.model_copy(update={"partnership": f"{wirral.partnership} {i}"})
        for i in range(snapshots.MAX_VARIANTS + 3)
    ]
    for variant in variants:
        assert snapshots.shared(variant) == variant
    key = (wirral.id, str(wirral.version))
    assert len(snapshots._shared[key]) <= snapshots.MAX_VARIANTS
