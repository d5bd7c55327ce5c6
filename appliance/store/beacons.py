"""The beacons, pairings and presence tables: what must survive a restart.

Only paired beacons are stored; unpaired ones live in memory (no SD-card writes for passers-by).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from appliance.store.db import Database, from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class StoredBeacon:
    address: str
    beacon_id: int
    name: str
    firmware: str | None
    first_seen: datetime
    user_id: str
    user_name: str
    paired_at: datetime
    state: str
    last_seen: datetime
    window_from: datetime
    rssi: int | None


async def save_pairing(
    db: Database, *, address: str, beacon_id: int, name: str, first_seen: datetime,
    user_id: str, user_name: str, paired_at: datetime, state: str, last_seen: datetime,
    window_from: datetime, rssi: int | None,
) -> None:
    """Store a pairing and its presence row in one transaction (re-pairing replaces the user)."""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO beacons (address, beacon_id, name, first_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (address) DO UPDATE SET beacon_id = excluded.beacon_id, "
            "name = excluded.name",
            (address, beacon_id, name, to_db_time(first_seen)),
        )
        await tx.execute(
            "INSERT INTO pairings (address, user_id, user_name, paired_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (address) DO UPDATE SET user_id = excluded.user_id, "
            "user_name = excluded.user_name, paired_at = excluded.paired_at",
            (address, user_id, user_name, to_db_time(paired_at)),
        )
        await tx.execute(
            "INSERT INTO presence (address, state, last_seen, window_from, rssi, changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
            " state = excluded.state, last_seen = excluded.last_seen,"
            " window_from = excluded.window_from, rssi = excluded.rssi,"
            " changed_at = excluded.changed_at",
            (address, state, to_db_time(last_seen), to_db_time(window_from), rssi,
             to_db_time(paired_at)),
        )


async def delete_pairing(db: Database, address: str) -> bool:
    result = await db.execute("DELETE FROM pairings WHERE address = ?", (address,))
    return result.rowcount == 1


async def set_state(
    db: Database, address: str, state: str, last_seen: datetime, window_from: datetime,
    when: datetime,
) -> None:
    await db.execute(
        "UPDATE presence SET state = ?, last_seen = ?, window_from = ?, changed_at = ?"
        " WHERE address = ?",
        (state, to_db_time(last_seen), to_db_time(window_from), to_db_time(when), address),
    )


async def set_last_seen(
    db: Database, rows: list[tuple[str, datetime, datetime, int | None]]
) -> None:
    """Batched last-seen/window/RSSI update, rows of (address, last_seen, window_from, rssi);
    refused on a full card (the service keeps them and writes them when there is room)."""
    async with db.transaction(can_wait=True) as tx:
        await tx.executemany(
            "UPDATE presence SET last_seen = ?, window_from = ?, rssi = ? WHERE address = ?",
            [
                (to_db_time(seen), to_db_time(window), rssi, address)
                for address, seen, window, rssi in rows
            ],
        )


async def set_firmware(db: Database, address: str, firmware: str) -> None:
    await db.execute("UPDATE beacons SET firmware = ? WHERE address = ?", (firmware, address))


async def paired(db: Database) -> list[StoredBeacon]:
    rows = await db.fetch_all(
        "SELECT b.address, b.beacon_id, b.name, b.firmware, b.first_seen, p.user_id, p.user_name,"
        " p.paired_at, s.state, s.last_seen, s.window_from, s.rssi FROM beacons b"
        " JOIN pairings p USING (address) JOIN presence s USING (address) ORDER BY b.address",
    )
    return [
        StoredBeacon(
            address=row["address"], beacon_id=row["beacon_id"], name=row["name"],
            firmware=row["firmware"], first_seen=from_db_time(row["first_seen"]),
            user_id=row["user_id"], user_name=row["user_name"],
            paired_at=from_db_time(row["paired_at"]), state=row["state"],
            last_seen=from_db_time(row["last_seen"]),
            window_from=from_db_time(row["window_from"]), rssi=row["rssi"],
        )
        for row in rows
    ]
