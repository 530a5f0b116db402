"""``python -m reconcile`` is the ``reconcile`` command."""

from reconcile.cli import main

main()
