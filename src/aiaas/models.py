"""Every ORM model, imported in one place so Alembic and the tests see the whole schema."""

from aiaas.accounts.models import ApiKey, User
from aiaas.db import Base

metadata = Base.metadata

__all__ = ["ApiKey", "User", "metadata"]
