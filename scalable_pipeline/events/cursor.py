"""The sensor's cursor over asset check executions: pure, saved as JSON.

Each check execution is one row with an instance-wide id, created PLANNED when its run is created and
filled in when the check is evaluated. Ids therefore follow run creation, not evaluation: a run created
earlier can report after a later one. The cursor keeps the highest id read (``after``) and, per check,
the ids read while still planned (``planned``), which are read again until they are evaluated or their
run has ended without evaluating them.
"""

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExecutionCursor:
    after: int = 0
    planned: dict[str, list[int]] = field(default_factory=dict)  # check key (``asset:check``) -> ids still planned

    def lowest_unread(self, check: str) -> int:
        """Every execution of ``check`` with an id below this one is done with."""
        return min(self.planned.get(check, []), default=self.after + 1)

    def needs_reading(self, check: str, execution_id: int) -> bool:
        return execution_id > self.after or execution_id in self.planned.get(check, [])

    def to_json(self) -> str:
        planned = {check: sorted(ids) for check, ids in sorted(self.planned.items()) if ids}
        return json.dumps({"after": self.after, "planned": planned})


def parse_cursor(text: str | None) -> tuple[ExecutionCursor | None, bool]:
    """The saved cursor (None before the first tick), and True when ``text`` is the previous version's
    cursor (a bare event storage id), which cannot be mapped to execution ids and is read as no cursor."""
    if not text:
        return None, False
    saved = json.loads(text)
    if isinstance(saved, int):
        return None, True
    return ExecutionCursor(after=saved["after"], planned=saved["planned"]), False
