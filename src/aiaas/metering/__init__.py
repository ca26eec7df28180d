"""The usage meter: counts in memory what each account uses, per model and hour, and adds
the counts to the ``usage_hours`` table; the report on them is ``aiaas.usage``."""
