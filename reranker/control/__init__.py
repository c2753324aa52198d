"""Control layer: registry, routing, rollout state machine, gates and the store."""
