"""``reconcile apply``'s engine: the executor, its events, the journal, backups and undo.

``apply_plan`` is the entry point; ``Journal.open`` makes the journal it needs.
"""

from reconcile.apply.executor import ApplyResult, apply_plan, check_plan
from reconcile.apply.journal import Journal, plan_digest

__all__ = ["ApplyResult", "Journal", "apply_plan", "check_plan", "plan_digest"]
