"""Artifact versions in an emulator fixture: ``runs[].artifacts`` (see ``reconcile.emulator.artifacts``).

```yaml
runs:
  - {entity: acme, project: vision, id: run1, artifacts: [
      {name: ckpt-run1, type: model, size: 12300000, aliases: [best], created_at: 2026-01-02T03:00:00Z},
      {name: ckpt-run1, type: model, files: [{name: model.ckpt, size: 1000}], ttl_days: 30}]}
```
Versions of one collection number in fixture order (v0, v1, ...); ``latest`` goes to the newest
unless the fixture names it. A version's size is the sum of its files (``size`` alone makes one
file ``<name>.bin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TTL_DISABLED = -2
"""``ttlDurationSeconds`` of a version without TTL (the client's DISABLED; INHERIT is -1)."""

_SEQUENCE = "ArtifactSequence"


class ArtifactFixtureError(ValueError):
    """A malformed ``artifacts:`` entry in a fixture; the message names the run and entry."""


@dataclass(frozen=True, slots=True)
class SeedArtifactFile:
    """One file of a seeded artifact version."""

    name: str
    size: int
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class SeedArtifact:
    """One artifact version logged by a seeded run (versions number in fixture order per collection)."""

    name: str  # the collection's name
    type: str
    aliases: tuple[str, ...]
    created_at: str
    files: tuple[SeedArtifactFile, ...]
    ttl_seconds: int = TTL_DISABLED
    metadata: Mapping[str, Any] | None = None

    @property
    def size(self) -> int:
        """The version's size: the sum of its files (as W&B reports it)."""
        return sum(f.size for f in self.files)


_KEYS = {"name", "type", "aliases", "created_at", "size", "files", "ttl_days", "metadata"}


def parse_seed_artifacts(
    raw: Any, where: str, default_time: str, to_iso: Callable[[Any, str], str]
) -> tuple[SeedArtifact, ...]:
    """The ``artifacts:`` list of one fixture run."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ArtifactFixtureError(f"{where}: artifacts must be a list")
    out = []
    for i, item in enumerate(raw):
        at = f"{where} artifacts[{i}]"
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("type"), str)
        ):
            raise ArtifactFixtureError(f"{at}: needs a name and a type (strings)")
        unknown = set(item) - _KEYS
        if unknown:
            raise ArtifactFixtureError(f"{at}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        aliases = item.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ArtifactFixtureError(f"{at}: aliases must be a list of strings")
        files_raw = item.get("files")
        files: tuple[SeedArtifactFile, ...]
        if files_raw is None:
            size = item.get("size", 0)
            if not isinstance(size, int) or size < 0:
                raise ArtifactFixtureError(f"{at}: size must be a non-negative integer (bytes)")
            files = (SeedArtifactFile(f"{item['name']}.bin", size),)
        elif isinstance(files_raw, list):
            files = tuple(_seed_file(f, f"{at} files[{j}]") for j, f in enumerate(files_raw))
        else:
            raise ArtifactFixtureError(f"{at}: files must be a list")
        ttl_days = item.get("ttl_days")
        if ttl_days is not None and (not isinstance(ttl_days, int) or ttl_days <= 0):
            raise ArtifactFixtureError(f"{at}: ttl_days must be a positive integer")
        out.append(
            SeedArtifact(
                name=item["name"],
                type=item["type"],
                aliases=tuple(aliases),
                created_at=to_iso(item["created_at"], at) if "created_at" in item else default_time,
                files=files,
                ttl_seconds=ttl_days * 86_400 if ttl_days else TTL_DISABLED,
                metadata=item.get("metadata"),
            )
        )
    return tuple(out)


def _seed_file(raw: Any, where: str) -> SeedArtifactFile:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ArtifactFixtureError(f"{where}: each file needs a name")
    content = raw.get("content")
    data = content.encode() if isinstance(content, str) else None
    size = raw.get("size", len(data) if data is not None else 0)
    if not isinstance(size, int) or size < 0 or (data is not None and size != len(data)):
        raise ArtifactFixtureError(f"{where}: size must be the file's byte count")
    return SeedArtifactFile(raw["name"], size, data)
