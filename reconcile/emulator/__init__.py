"""A local W&B-compatible GraphQL server backed by SQLite, driven by the real ``wandb`` client.

``reconcile emulator`` (``reconcile.commands.emulator``) serves it; tests use
``reconcile.emulator.testing.running_emulator``. See ``README.md`` here for what is reproduced.
"""
