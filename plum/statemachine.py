"""One declared table of allowed transitions per stateful entity. A transition outside the
table raises and changes nothing."""

from collections.abc import Iterable, Mapping

from plum.errors import InvalidTransitionError


class Transitions:
    def __init__(self, entity: str, table: Mapping[str, Iterable[str]]):
        self.entity = entity
        self.table = {source: frozenset(targets) for source, targets in table.items()}

    def allowed(self, source: str, target: str) -> bool:
        return target in self.table.get(source, ())

    def sources_for(self, target: str) -> list[str]:
        """States from which `target` may be reached: use in a conditional UPDATE's WHERE."""
        return sorted(source for source, targets in self.table.items() if target in targets)

    def check(self, source: str, target: str) -> None:
        source, target = str(source), str(target)  # plain values, also for TextChoices members
        if not self.allowed(source, target):
            raise InvalidTransitionError(
                f"A {self.entity} cannot go from {source!r} to {target!r}.",
                source=source,
                target=target,
            )
