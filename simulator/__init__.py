"""Discrete-event serving simulator (simpy): workloads, schedulers, KV cache, replicas, routers, metrics."""
