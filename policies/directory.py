"""The role directory: who holds each role a policy names.

A policy is public and names roles ("line manager", "designated safeguarding
lead", "business team"); the directory is the deployment's private list of
the people who hold them, kept apart so that a change of staff never changes
a policy. One YAML file covers every partnership the deployment serves::

    partnerships:
      merton:                           # a policy id
        business_team:                  # the partnership's business team
          - {name: Sam Patel, email: mscp@merton.example.org}
        contacts:                       # roles outside the two agencies
          independent-person: [{name: ..., email: ...}]
        areas:
          merton:                       # an area key of the policy
            business_team: []           # optional: this area's own team
            contacts: {}                # e.g. the area's front door
            agencies:
              merton-health:            # the agency key cases use
                name: Merton health
                kind: health
                roles:
                  practitioner: [{name: ..., email: ...}]

How a notice's recipient (``workflows.messages.Recipient``) becomes people:

- a recipient that carries an email (the person who raised the concern) is
  that person;
- ``business-team``: the area's business team, else the partnership's;
- a role within an agency: the agency's holders of that role (the area's
  agency entry, else a partnership-wide agency entry), else the area's or
  the partnership's contacts for that role: a partnership-wide role such as
  an independent chair is written once, not under every agency;
- any other role (urgent contacts, extra notices): the area's contacts,
  then the partnership's.

A role that resolves to nobody is *unfilled*: ``resolve`` reports it, the
notice activity tells the business team and the case records it. It is
never skipped silently.

Like ``policies.loader``, a bad file surfaces as ``DirectoryFileError`` with
one problem per invalid field; ``coverage`` lists the roles a policy needs
that nobody holds, for ``escalation directory check``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.loader import DataFileError, Problem, read_yaml, validation_problems
from policies.model import AgencyKind, Key, Policy

EXAMPLE_FILE = Path(__file__).parent / "data" / "directory.example.yaml"

# Deliberately simple: a directory entry is typed by an administrator, and
# a typo such as a missing @ or a space must be caught before a notice is due.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(_Frozen):
    """Someone who holds a role (or a shared inbox, e.g. a duty team)."""

    name: str = Field(min_length=2, max_length=200)
    email: str = Field(max_length=254)
    title: str | None = Field(default=None, description="Job title, shown in notices.")

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @property
    def address(self) -> str:
        return self.email.lower()


People = Annotated[
    tuple[Person, ...],
    Field(min_length=1, description="At least one person; remove the role if nobody holds it."),
]


class AgencyEntry(_Frozen):
    name: str = Field(min_length=2)
    kind: AgencyKind
    roles: dict[Key, People] = Field(default_factory=dict)


class AreaEntry(_Frozen):
    business_team: tuple[Person, ...] = ()
    contacts: dict[Key, People] = Field(default_factory=dict)
    agencies: dict[Key, AgencyEntry] = Field(default_factory=dict)


class PartnershipEntry(_Frozen):
    name: str | None = None
    business_team: tuple[Person, ...] = ()
    contacts: dict[Key, People] = Field(default_factory=dict)
    agencies: dict[Key, AgencyEntry] = Field(
        default_factory=dict, description="Agencies that serve every area of the partnership."
    )
    areas: dict[Key, AreaEntry] = Field(default_factory=dict)


class Directory(_Frozen):
    partnerships: dict[Key, PartnershipEntry]

    # --- Lookups -----------------------------------------------------------

    def partnership(self, policy_id: str) -> PartnershipEntry | None:
        return self.partnerships.get(policy_id)

    def agency(self, policy_id: str, area: str | None, key: str) -> AgencyEntry | None:
        entry = self.partnerships.get(policy_id)
        if entry is None:
            return None
        area_entry = entry.areas.get(area) if area else None
        if area_entry is not None and key in area_entry.agencies:
            return area_entry.agencies[key]
        if area is None:
            for candidate in entry.areas.values():
                if key in candidate.agencies:
                    return candidate.agencies[key]
        return entry.agencies.get(key)

    def business_team(self, policy_id: str, area: str | None) -> tuple[Person, ...]:
        entry = self.partnerships.get(policy_id)
        if entry is None:
            return ()
        area_entry = entry.areas.get(area) if area else None
        if area_entry is not None and area_entry.business_team:
            return area_entry.business_team
        return entry.business_team

    def contacts(self, policy_id: str, area: str | None, role: str) -> tuple[Person, ...]:
        entry = self.partnerships.get(policy_id)
        if entry is None:
            return ()
        area_entry = entry.areas.get(area) if area else None
        if area_entry is not None and role in area_entry.contacts:
            return area_entry.contacts[role]
        return entry.contacts.get(role, ())

    def holders(
        self,
        policy_id: str,
        area: str | None,
        role: str,
        agency: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> tuple[Person, ...]:
        """The people who hold a role; empty if nobody does."""
        if email:
            try:
                return (Person(name=name or email, email=email),)
            except ValidationError:
                return ()
        if role == "business-team":
            return self.business_team(policy_id, area)
        if agency:
            entry = self.agency(policy_id, area, agency)
            if entry is not None and role in entry.roles:
                return entry.roles[role]
        return self.contacts(policy_id, area, role)


# --- Reading a directory file -------------------------------------------------


class DirectoryFileError(DataFileError):
    pass


def _explain(err: Any) -> str | None:
    if err["type"] == "too_short" and err["loc"] and isinstance(err["loc"][-1], str):
        return "lists nobody: name at least one person, or remove the role"
    if err["type"] == "string_pattern_mismatch":
        return "keys are lower-case letters, digits and hyphens, e.g. 'merton-health'"
    return None


def parse_directory(data: Any, file: str) -> Directory:
    if not isinstance(data, dict):
        raise DirectoryFileError([Problem(file, "", "a directory file must be a YAML mapping")])
    try:
        return Directory.model_validate(data)
    except ValidationError as exc:
        raise DirectoryFileError(validation_problems(exc, file, "directory", _explain)) from None


def load_directory(path: str | Path) -> Directory:
    name, data = read_yaml(path, DirectoryFileError)
    return parse_directory(data, name)


def example_directory() -> Directory:
    return load_directory(EXAMPLE_FILE)


# --- Checking a directory against the policies ------------------------------------


@dataclass(frozen=True)
class Gap:
    """A role a policy needs that nobody holds in the directory."""

    partnership: str
    area: str | None
    agency: str | None
    role: str
    needed_for: str

    def __str__(self) -> str:
        where = self.partnership
        if self.area:
            where += f"/{self.area}"
        if self.agency:
            where += f"/{self.agency}"
        return f"{where}: nobody holds {self.role!r} ({self.needed_for})"


def consistency_problems(
    directory: Directory, policies: Mapping[str, Policy], file: str
) -> list[Problem]:
    """Entries that name a partnership or area no policy has, or an agency
    key used twice in one partnership."""
    problems: list[Problem] = []
    for pid, entry in directory.partnerships.items():
        policy = policies.get(pid)
        if policy is None:
            problems.append(
                Problem(
                    file,
                    f"partnerships.{pid}",
                    f"no policy has id {pid!r}; known policies: {', '.join(sorted(policies))}",
                )
            )
            continue
        areas = {a.key for a in policy.areas}
        seen: dict[str, str] = {key: "(partnership-wide)" for key in entry.agencies}
        for area_key, area in entry.areas.items():
            if area_key not in areas:
                problems.append(
                    Problem(
                        file,
                        f"partnerships.{pid}.areas.{area_key}",
                        f"the {pid} policy has no area {area_key!r}; its areas are "
                        f"{', '.join(sorted(areas))}",
                    )
                )
            for agency_key in area.agencies:
                if agency_key in seen:
                    problems.append(
                        Problem(
                            file,
                            f"partnerships.{pid}.areas.{area_key}.agencies.{agency_key}",
                            f"agency {agency_key!r} is also listed under {seen[agency_key]}; "
                            "an agency key names one agency",
                        )
                    )
                seen[agency_key] = f"area {area_key}"
    return problems


def _agencies_in(entry: PartnershipEntry, area: str) -> dict[str, AgencyEntry]:
    out = dict(entry.agencies)
    area_entry = entry.areas.get(area)
    if area_entry is not None:
        out.update(area_entry.agencies)
    return out


def coverage(directory: Directory, policy: Policy) -> list[Gap]:
    """Every role this policy can send a notice to, in every area and agency
    the directory lists, that nobody holds."""
    entry = directory.partnership(policy.id)
    if entry is None:
        return [Gap(policy.id, None, None, "business-team", "the partnership is not listed")]
    gaps: list[Gap] = []
    pid = policy.id
    for area in policy.areas:
        if not directory.business_team(pid, area.key):
            gaps.append(Gap(pid, area.key, None, "business-team", policy.business_team))
        for contact in policy.immediate_risk.urgent_contacts:
            if contact.area not in (None, area.key):
                continue
            if not directory.holders(pid, area.key, contact.role):
                gaps.append(
                    Gap(pid, area.key, None, contact.role, f"urgent contact: {contact.title}")
                )
        kinds_seen: set[str] = set()
        agencies = _agencies_in(entry, area.key)
        for agency_key, agency in agencies.items():
            kinds_seen.add(agency.kind)
            for stage in policy.stages:
                owners = {stage.owner_for(agency.kind, s) for s in (None, *policy.subjects)}
                for owner in sorted(owners, key=lambda o: o.role):
                    held_by = None if owner.held_for == "partnership" else agency_key
                    if not directory.holders(pid, area.key, owner.role, agency=held_by):
                        gap = Gap(pid, area.key, held_by, owner.role, f"owner of {stage.name}")
                        if gap not in gaps:
                            gaps.append(gap)
        for stage in policy.stages:
            for notice in stage.extra_notices:
                if notice.only_if_agency_kind and notice.only_if_agency_kind not in kinds_seen:
                    continue
                if not directory.holders(pid, area.key, notice.role):
                    gaps.append(
                        Gap(pid, area.key, None, notice.role, f"{notice.title} ({stage.name})")
                    )
        if not agencies:
            gaps.append(Gap(pid, area.key, None, "agencies", "no agency is listed for this area"))
    return _unique(gaps)


def _unique(gaps: Iterable[Gap]) -> list[Gap]:
    seen: set[tuple[str, str | None, str | None, str]] = set()
    out = []
    for gap in gaps:
        key = (gap.partnership, gap.area, gap.agency, gap.role)
        if key not in seen:
            seen.add(key)
            out.append(gap)
    return out
