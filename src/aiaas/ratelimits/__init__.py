"""Rate limits per API key, per account and per client address (see ``policy``)."""

from aiaas.ratelimits.limiter import Decision, MemoryLimiter, Rate, RedisLimiter
from aiaas.ratelimits.policy import RateLimits, RouteClass

__all__ = ["Decision", "MemoryLimiter", "Rate", "RateLimits", "RedisLimiter", "RouteClass"]
