"""Usage metering: what each account used, per model and hour, and GET /v1/usage."""
