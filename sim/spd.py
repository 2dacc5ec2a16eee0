"""Security Policy Database: ordered rules per direction, first match wins."""

from __future__ import annotations

from latchnic.config import SpdRule
from .selectors import Flow, selectors_match


class Spd:
    def __init__(self, rules: list[SpdRule] = ()):
        self.rules = {"in": [], "out": []}
        for r in rules:
            self.rules[r.dir].append(r)

    def lookup(self, direction: str, flow: Flow) -> SpdRule | None:
        for rule in self.rules[direction]:
            if selectors_match(rule, flow):
                return rule
        return None

    def all(self) -> list[SpdRule]:
        return self.rules["out"] + self.rules["in"]
