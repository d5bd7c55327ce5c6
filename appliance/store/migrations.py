"""Numbered schema migrations; the schema version lives in PRAGMA user_version.

Never edit a migration that has shipped: add the next one. Each runs in one transaction together
with its user_version bump, so a power cut leaves the database at the old or the new version.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the timelapse relay's tables (users, temphum, status, images, timelapse_conf), with images
    #    as BLOBs instead of the reference's base64 text, and the newest 10 kept by a trigger.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE temphum (
        id INTEGER PRIMARY KEY,
        timestamp TEXT NOT NULL,
        temperature REAL NOT NULL,
        humidity REAL NOT NULL
    );
    CREATE INDEX temphum_timestamp ON temphum (timestamp);
    CREATE TABLE status (
        id INTEGER PRIMARY KEY,
        timestamp TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX status_timestamp ON status (timestamp);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        timestamp TEXT NOT NULL,
        mime TEXT NOT NULL CHECK (mime IN ('image/jpeg', 'image/png')),
        image BLOB NOT NULL
    );
    CREATE TRIGGER images_keep_newest_10 AFTER INSERT ON images BEGIN
        DELETE FROM images WHERE id NOT IN (SELECT id FROM images ORDER BY id DESC LIMIT 10);
    END;
    CREATE TABLE timelapse_conf (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        image_delay INTEGER NOT NULL,
        temphum_delay INTEGER NOT NULL,
        status_delay INTEGER NOT NULL
    );
    INSERT INTO timelapse_conf (id, image_delay, temphum_delay, status_delay) VALUES (1, 10, 60, 10);
    """,
    # 2: the presence server's state, which the reference kept in memory only, and publisher tokens.
    """
    CREATE TABLE publisher_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT
    );
    CREATE TABLE beacons (
        address TEXT PRIMARY KEY,
        beacon_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        firmware TEXT,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE pairings (
        address TEXT PRIMARY KEY REFERENCES beacons (address) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        paired_at TEXT NOT NULL
    );
    CREATE TABLE presence (
        address TEXT PRIMARY KEY REFERENCES pairings (address) ON DELETE CASCADE,
        state TEXT NOT NULL CHECK (state IN ('connected', 'away', 'requiresTap')),
        last_seen TEXT NOT NULL,
        -- the reconnect window counts from here: the last sighting, or a Reconnect tap after it
        window_from TEXT NOT NULL,
        rssi INTEGER,
        changed_at TEXT NOT NULL
    );
    """,
    # 3: login sessions on the server, so logout, a password change and deleting a user end them.
    """
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    """,
    # 4: timelapse recordings, one per print. Only the index: frames and videos are files in
    #    data_dir/timelapses/<id>/ (never BLOBs); a row says which state its files are in.
    """
    CREATE TABLE recordings (
        id INTEGER PRIMARY KEY,
        job TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        state TEXT NOT NULL CHECK (state IN ('recording', 'rendering', 'ready', 'failed')),
        mode TEXT NOT NULL CHECK (mode IN ('layer', 'interval')),
        -- printer: started and ended by the printer's gcode_state; manual: by the API
        trigger TEXT NOT NULL CHECK (trigger IN ('printer', 'manual')),
        frames INTEGER NOT NULL DEFAULT 0,
        duration_s REAL,
        size_bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX recordings_state ON recordings (state);
    """,
    # 5: satellite scanners (MQTT): the broker checks their passwords, so only the hash in
    #    mosquitto's own format (PBKDF2-SHA512) is kept; the area is where the scanner stands.
    """
    CREATE TABLE scanners (
        id TEXT PRIMARY KEY,
        area TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
)

LATEST: Final = len(MIGRATIONS)
