"""Form fields to API bodies, and pydantic's errors as the pages show them.

The pages build the API's own bodies (``api.schemas``) from what was posted
and let the same validators decide, so a page accepts exactly what the API
accepts; each error goes next to its field and into the error summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

# What the GOV.UK pattern asks for, per field, where pydantic's own words
# would read like a developer's.
MESSAGES: dict[tuple[str, str], str] = {
    ("summary", "string_too_short"): "Enter what the disagreement is about",
    ("summary", "missing"): "Enter what the disagreement is about",
    (
        "summary",
        "string_too_long",
    ): "What the disagreement is about must be 10,000 characters or fewer",
    ("decision_disputed", "string_too_long"): "The decision must be 10,000 characters or fewer",
    ("receiving_agency", "missing"): "Select the agency whose decision you disagree with",
    ("child_name", "missing"): "Enter the child's name, or tick immediate risk if you cannot",
    ("child_date_of_birth", "date_from_datetime_parsing"): "Enter the date of birth as a real date",
    ("child_date_of_birth", "date_parsing"): "Enter the date of birth as a real date",
    ("reason", "string_too_short"): "Enter your reason",
    ("reason", "missing"): "Enter your reason",
    ("outcome", "string_too_short"): "Enter the outcome",
    ("outcome", "missing"): "Enter the outcome",
    ("text", "string_too_short"): "Enter the discussion to record",
    ("confirmation", "string_too_short"): "Enter how the outcome was confirmed",
    ("token", "missing"): "Enter your access token",
    ("categories", "string_pattern_mismatch"): "Choose the categories from the list",
    ("categories", "string_too_long"): "Choose the categories from the list",
    ("categories", "too_long"): "Choose 10 categories or fewer",
    ("deadline", "missing"): "Enter the new deadline",
}


@dataclass
class Errors:
    """Field name -> message, in the order the fields appear."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, message)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


def field_name(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the form's field name: ``child.name`` is
    ``child_name``, ``form.brief-details`` is ``form-brief-details``, and an
    item of a list (``categories.2``) is the list's field."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts and parts[0] == "form" and len(parts) > 1:
        return "form-" + parts[1]
    return "_".join(parts)


def from_validation(exc: ValidationError, errors: Errors | None = None) -> Errors:
    errors = errors or Errors()
    for error in exc.errors(include_url=False, include_input=False):
        name = field_name(tuple(error["loc"]))
        message = MESSAGES.get((name, error["type"]))
        if message is None:
            message = str(error["msg"]).removeprefix("Value error, ")
            message = message[0].upper() + message[1:]
        errors.add(name, message)
    return errors
