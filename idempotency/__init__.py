"""``Idempotency-Key`` for POSTs: a retried request returns the first response and creates nothing."""
