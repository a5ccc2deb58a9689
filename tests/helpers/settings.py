"""The app's settings as a test varies them: a changed copy, or the environment variables they are read from."""

from __future__ import annotations

import msgspec

from app.settings import Settings

SETTINGS_ENV = {f.name.upper() for f in msgspec.structs.fields(Settings)}


def with_settings(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)
