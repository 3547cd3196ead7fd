"""The plan a reconcile returns: the actions one sync pass applies, as plain records.

:mod:`hub.reconcile` builds a :class:`Plan` (pure); :mod:`hub.sync` applies it (I/O). Keeping
the records apart lets both sides, and the tests, read them without the reconcile rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hub.model import Appointment, Conflict, SyncStatus
from hub.spec import EventData


class ActionLabel(StrEnum):
    """What a planned action is for: pass counts, metrics and audit entries name it. The
    values are what counts and audit rows have always held."""

    # hub-owned pairs
    CREATE = "create"  # a hub appointment never pushed
    RESTORE = "restore"  # re-created after a remote delete (restore, or an edit beat it)
    UPDATE = "update"  # the hub changed: pushed
    FLOW_BACK = "flow-back"  # the remote changed: taken into the hub (rest pushed again)
    LINK = "link"  # a remote event found by hub id, linked to its appointment
    STATUS = "status"  # nothing changed but the version: the status row is refreshed
    CONFLICT_HUB = "conflict-hub"  # both changed, the hub's side won
    CONFLICT_REMOTE = "conflict-remote"  # both changed, the remote side won
    UNDELETE = "undelete"  # a remote edit beat the hub's delete
    HUB_DELETE = "hub-delete"  # the remote event was deleted: so is the appointment
    REMOTE_DELETE = "remote-delete"  # the appointment was deleted: so is the remote event
    FORGET = "forget"  # both sides gone: the status row goes
    PURGE = "purge"  # a tombstone with nothing remote: purged
    DUPLICATE = "duplicate"  # a second remote event with one hub id: deleted
    ORPHAN = "orphan"  # a remote event tagged with a purged appointment: deleted
    # imports of external events
    IMPORT = "import"
    PULL = "pull"  # an imported event changed
    UNIMPORT = "unimport"  # import switched off: the copy goes


@dataclass(slots=True)
class HubAction:
    """A change on the hub side only, written in one transaction.

    ``label``: import, pull (external changed), flow-back, link, status (version refresh),
    hub-delete (remote deleted, follow), unimport (import off), forget (both sides gone),
    purge (tombstone with nothing remote), undelete (remote edit beats hub delete).
    """

    label: ActionLabel
    appointment_id: str
    put: Appointment | None = None
    delete: bool = False  # tombstone and purge the appointment (its status rows go with it)
    purge: bool = False  # purge an existing tombstone
    status: SyncStatus | None = None
    drop_status: bool = False
    conflict: Conflict | None = None
    audit: tuple[str, dict[str, Any]] | None = None
    expect_version: int | None = None  # the hub version planned from (default: put's)

    @property
    def planned_version(self) -> int | None:
        """The appointment version this action was planned from: the engine skips the
        action when the appointment changed in the meantime (the next pass re-plans it)."""
        if self.expect_version is not None:
            return self.expect_version
        return self.put.version if self.put is not None else None


@dataclass(slots=True)
class PushAction:
    """A create (``remote_id is None``) or an update with its precondition ``version``.

    After the provider accepted it, the engine writes ``hub_put`` (the hub side of a flow-back),
    the final status row and ``conflict`` in one transaction. ``label``: create, restore,
    update, flow-back (A/B content pushed again with the remote's times), conflict-hub,
    conflict-remote.
    """

    label: ActionLabel
    appointment_id: str
    data: EventData
    remote_id: str | None = None
    version: str | None = None
    hub_put: Appointment | None = None
    conflict: Conflict | None = None
    audit: tuple[str, dict[str, Any]] | None = None
    replaces: str | None = None  # restore: the remote id of the deleted event
    hub_hash: str = field(init=False, default="")

    def __post_init__(self) -> None:
        # Hashed once here: the engine needs it for the creating row and the final row.
        self.hub_hash = self.data.content_hash()

    @property
    def is_create(self) -> bool:
        return self.remote_id is None


@dataclass(slots=True)
class RemoteDeleteAction:
    """Delete a remote event with its precondition, then forget it on the hub side.

    ``appointment_id`` is None for a stray event (a duplicate, or an orphan whose hub
    appointment was purged) that has no status row. ``purge`` removes the hub tombstone;
    ``drop_status`` removes the status row while the appointment stays (no longer pushed).
    """

    label: ActionLabel
    remote_id: str
    version: str | None
    appointment_id: str | None = None
    purge: bool = False
    drop_status: bool = False
    conflict: Conflict | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """An item left out of this pass, with the reason shown to administrators."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass(slots=True)
class Plan:
    """The outcome of :func:`reconcile`.

    When ``get`` or ``find`` is non-empty the plan is incomplete: ask the provider and
    reconcile again. ``stop`` is set when the pass must not go on (the reason);
    ``used_empty_override`` tells the engine to clear a one-shot override.
    """

    hub: list[HubAction] = field(default_factory=list)
    remote_deletes: list[RemoteDeleteAction] = field(default_factory=list)
    pushes: list[PushAction] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    get: list[str] = field(default_factory=list)
    find: list[str] = field(default_factory=list)
    stop: str | None = None
    used_empty_override: bool = False

    @property
    def needs_lookup(self) -> bool:
        return bool(self.get or self.find)

    @property
    def empty(self) -> bool:
        return not (self.hub or self.remote_deletes or self.pushes)

    def labels(self) -> list[ActionLabel]:
        """Every action's label (tests and counts)."""
        return [a.label for a in (*self.hub, *self.remote_deletes, *self.pushes)]

    def appointment_ids(self) -> set[str]:
        """The hub ids the actions concern (the stray remote deletes have none)."""
        ids = {a.appointment_id for a in (*self.hub, *self.pushes)}
        ids.update(a.appointment_id for a in self.remote_deletes if a.appointment_id)
        return ids

    def conflicts(self) -> list[Conflict]:
        return [
            a.conflict
            for a in (*self.hub, *self.remote_deletes, *self.pushes)
            if a.conflict is not None
        ]
