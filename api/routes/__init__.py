"""One router per resource: disagreements, policies, health."""
