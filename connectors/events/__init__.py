"""Outbound events: workspaces subscribe a URL to event types and receive signed JSON.

- `model`: the event types, subscription records, the body a receiver gets;
- `signing`: the `Sqlbook-Signature` header and `verify`, the receiver's check;
- `outbox`: subscriptions, the outbox and the delivery log in PostgreSQL (`emit` writes an
  event in the caller's transaction);
- `deliverer`: sends due deliveries in event-time order per subscription, with retries,
  backoff, the attempt log and auto-disabling;
- `dispatch`: wakes a deliverer in this process right after an event is emitted.
"""
