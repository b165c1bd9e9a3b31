"""Which devices an operator credential may see: a list of ids, or a label selector.

A key scoped to some devices sees only those: lists leave the others out,
and a get, a read or a live feed of another answers NOT_FOUND, so a scoped
key cannot even learn which other devices exist. The check is one indexed
read (`sensormesh_core.storage.registry.require_visible`) or a filter in the
list's SQL, so it stays right when a device's labels change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceScope:
    """Devices listed by id, or whose labels include every pair of `labels`."""

    device_ids: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, device_ids: Iterable[str], labels: Mapping[str, str]) -> DeviceScope | None:
        """The scope, or None (every device) when both are empty."""
        ids = frozenset(device_ids)
        if not ids and not labels:
            return None
        return cls(ids, dict(labels))

    def allows(self, device_id: str, device_labels: Mapping[str, str]) -> bool:
        """Whether a device with this id and these labels is in scope."""
        if self.device_ids:
            return device_id in self.device_ids
        return all(device_labels.get(k) == v for k, v in self.labels.items())

    def describe(self) -> str:
        """`ids:a,b` or `labels:k=v,...`, for lists and logs."""
        if self.device_ids:
            return "ids:" + ",".join(sorted(self.device_ids))
        return "labels:" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def parse_selector(text: str) -> DeviceScope:
    """`site=greenhouse,tier=prod` (labels) or `pi-1,pi-2` (ids), as `sensormesh keys create --devices` takes it.

    Raises ValueError for an empty selector or one that mixes the two forms.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("a device selector names ids (pi-1,pi-2) or labels (site=greenhouse)")
    pairs = [p for p in parts if "=" in p]
    if pairs and len(pairs) != len(parts):
        raise ValueError("a device selector is either ids or key=value labels, not both")
    if pairs:
        labels = dict(p.split("=", 1) for p in pairs)
        return DeviceScope(frozenset(), {k.strip(): v.strip() for k, v in labels.items()})
    return DeviceScope(frozenset(parts), {})
