"""Quotas per account: how much one account may own and run, checked before anything is
stored or queued (see ``service``)."""

from aiaas.quotas.service import Quota, Quotas, UsageCounter, limits_for

__all__ = ["Quota", "Quotas", "UsageCounter", "limits_for"]
