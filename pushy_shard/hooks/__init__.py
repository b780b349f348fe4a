"""The hooks process: every app's webhooks (PUSHER.md 9), posted off the shards' time."""
