"""The dashboard's users: one row per login, shared by every dashboard replica.

Only bcrypt hashes are stored (dashboards.users_file makes and checks them), never a
password. `email` matches an OIDC login to a user; a user without `password_hash` can log
in only through OIDC.

Keep versions/*.py in step with this file: tests compare the migrated schema to it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.models import Base


class DashboardUserRow(Base):
    """A dashboard login: its role, bcrypt hash (None: OIDC only) and e-mail."""

    __tablename__ = "dashboard_users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | analyst | admin
    password_hash: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
