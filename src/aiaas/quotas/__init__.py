"""Quotas per account: how much one account may own and run, checked before anything is
stored or queued (see ``service``)."""

from aiaas.quotas.service import Quota, check, limits_for, quotas, usage_of

__all__ = ["Quota", "check", "limits_for", "quotas", "usage_of"]
